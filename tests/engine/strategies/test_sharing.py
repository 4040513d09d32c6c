"""Multi-model sharing: light models packed on one GPU, staggered ones rotated."""

from __future__ import annotations

import numpy as np

from advisor.engine.scenario import LoadShape, SloSpec
from advisor.engine.strategies import sharing
from tests.engine.strategies.helpers import context, deployment, run

MINUTES = 2 * 1440
DAY_MINUTE = np.arange(MINUTES) % 1440


def test_it_packs_two_light_models_on_one_gpu() -> None:
    ctx = context(
        deployment("a", rate_rps=0.2),
        deployment("b", model="Qwen2.5-7B", rate_rps=0.1, seed=1),
    )
    result = run(sharing, ctx, "a")
    assert result.status == "recommended"
    group = result.details["groups"][0]
    assert group["kind"] == "co-location"
    assert sorted(group["members"]) == ["a", "b"]
    assert group["gpus_saved"] == 1.0
    assert 0.0 < group["memory_headroom"] < 1.0
    share = result.config_change.engine_args["--gpu-memory-utilization"]
    assert 0.0 < share < 0.5
    assert result.projected.gpus < result.baseline.gpus
    assert (
        result.projected.tpot_p95_s >= result.alternatives[0].projection.tpot_p95_s
        if result.alternatives
        else True
    )


def test_it_rotates_models_used_at_staggered_times() -> None:
    day = LoadShape(np.where((DAY_MINUTE >= 480) & (DAY_MINUTE < 1200), 3.0, 0.0))
    night = LoadShape(np.where((DAY_MINUTE < 420) | (DAY_MINUTE >= 1260), 3.0, 0.0))
    free = SloSpec(min_replicas=0)  # no redundancy rule: a model may sleep while idle
    ctx = context(
        deployment("day", hardware="L40S", rate_rps=3.0, load=day, replicas=2, slo=free),
        deployment("night", model="Qwen2.5-7B", hardware="L40S", rate_rps=3.0, load=night, seed=1,
                   replicas=2, slo=free),
    )  # fmt: skip
    result = run(sharing, ctx, "night")
    group = result.details["groups"][0]
    assert group["kind"] == "rotation"
    assert group["gpus_after"] < group["gpus_before"]
    assert group["wake_s"]["night"] > 0.5
    assert result.config_change.engine_args["--enable-sleep-mode"] is True
    assert result.config_change.env["VLLM_SERVER_DEV_MODE"] == "1"


def test_it_keeps_models_under_the_redundancy_rule_awake() -> None:
    day = LoadShape(np.where((DAY_MINUTE >= 480) & (DAY_MINUTE < 1200), 3.0, 0.0))
    night = LoadShape(np.where((DAY_MINUTE < 420) | (DAY_MINUTE >= 1260), 3.0, 0.0))
    ctx = context(  # today 2 replicas each: the default rule keeps 2
        deployment("day", hardware="L40S", rate_rps=3.0, load=day, replicas=2),
        deployment("night", model="Qwen2.5-7B", hardware="L40S", rate_rps=3.0, load=night, seed=1,
                   replicas=2),
    )  # fmt: skip
    result = run(sharing, ctx, "night")
    assert result.details.get("groups", []) == []


def test_it_leaves_a_lone_busy_model_alone() -> None:
    result = run(sharing, context(deployment("solo", rate_rps=5.0)), "solo")
    assert result.status == "not_applicable"
