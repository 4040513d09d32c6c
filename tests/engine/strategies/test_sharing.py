"""Multi-model sharing: light models packed on one GPU, staggered ones rotated."""

from __future__ import annotations

import re

import numpy as np
import pytest

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


def test_it_counts_a_shared_gpus_idle_power_once() -> None:
    ctx = context(
        deployment("a", rate_rps=0.2),
        deployment("b", model="Qwen2.5-7B", rate_rps=0.1, seed=1),
    )
    result = run(sharing, ctx, "a")
    alone, shared = result.reference, result.projected
    # its share of one GPU's idle power, plus the same busy power it draws alone
    power = ctx.power(ctx.resolved["a"].hardware)
    watts = shared.gpus * power.idle_w + alone.gpus * alone.busy_fraction * (
        power.max_w - power.idle_w
    )
    hours = ctx.options.hours_per_month
    assert shared.gpus < alone.gpus == 1.0
    assert shared.energy_kwh_per_month == pytest.approx(watts * hours / 1000)
    assert shared.energy_j_per_output_token == pytest.approx(watts / alone.output_tokens_per_s)
    assert shared.energy_kwh_per_month < alone.energy_kwh_per_month


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


ROTATION_FLAT = "rotation: no deployment on {} goes 10 minutes without a request, so none can sleep"


def test_it_says_memory_is_why_two_light_models_do_not_share_an_l4() -> None:
    # each 8B model idles at 0.2 req/s, but two sets of BF16 weights do not fit in 24 GB
    ctx = context(
        deployment("a", hardware="L4", rate_rps=0.2),
        deployment("b", hardware="L4", rate_rps=0.2, seed=1),
    )
    result = run(sharing, ctx, "a")
    assert result.status == "not_recommended"
    found = re.fullmatch(
        r"not recommended: co-location: with b on one L4: memory does not fit: "
        r"a (\d+\.\d) GiB, b (\d+\.\d) GiB = (\d+\.\d) GiB > (\d+\.\d) GiB usable; (.*)",
        result.summary,
    )
    assert found, result.summary
    a, b, total, usable = (float(found.group(i)) for i in range(1, 5))
    assert total == pytest.approx(a + b, abs=0.11)
    assert a > 16.0
    assert total > usable == round(0.9 * ctx.resolved["a"].hardware.memory_bytes / 2**30, 1)
    assert found.group(5) == ROTATION_FLAT.format("L4")
    assert result.added_usd_per_month == 0.0


def test_it_says_tensor_parallel_replicas_are_not_packed_and_names_no_partner() -> None:
    ctx = context(
        deployment("big", model="Llama-3-70B", hardware="L40S", tensor_parallel=4, rate_rps=0.05),
        deployment("small", hardware="L40S", rate_rps=0.05, seed=1),
        deployment("other", hardware="H100-SXM", rate_rps=0.05, seed=2),
    )
    assert run(sharing, ctx, "big").summary == (
        "not recommended: co-location: each replica spans 4 GPUs (tensor parallel); only "
        "single-GPU replicas are co-located; " + ROTATION_FLAT.format("L40S")
    )
    assert run(sharing, ctx, "small").summary == (
        "not recommended: co-location: no other single-GPU, single-replica deployment runs on "
        "L40S; " + ROTATION_FLAT.format("L40S")
    )
    assert run(sharing, ctx, "other").summary == (
        "not recommended: co-location: no other single-GPU, single-replica deployment runs on "
        "H100-SXM; rotation: no other deployment on H100-SXM to pool with"
    )


def test_it_says_when_time_slicing_would_break_an_slo() -> None:
    tight = SloSpec(1.0, 0.008)
    ctx = context(
        deployment("a", rate_rps=0.5, slo=tight),
        deployment("b", model="Qwen2.5-7B", rate_rps=0.5, seed=1, slo=tight),
    )
    result = run(sharing, ctx, "a")
    assert result.status == "not_recommended"
    found = re.fullmatch(
        r"not recommended: co-location: with b on one H100-SXM: the SLO would break: time "
        r"slicing stretches a's TPOT p95 (\d+) ms x(\d\.\d\d) = (\d+) ms > 8 ms; (.*)",
        result.summary,
    )
    assert found, result.summary
    assert found.group(4) == ROTATION_FLAT.format("H100-SXM")


def test_it_says_when_two_models_are_too_busy_to_share() -> None:
    ctx = context(
        deployment("a", rate_rps=4.0), deployment("b", model="Qwen2.5-7B", rate_rps=4.0, seed=1)
    )
    result = run(sharing, ctx, "a")
    found = re.fullmatch(
        r"not recommended: co-location: with b on one H100-SXM: too busy together: "
        r"a (\d+)% \+ b (\d+)% busy at peak >= 90%; (.*)",
        result.summary,
    )
    assert found, result.summary
    assert int(found.group(1)) + int(found.group(2)) >= 90
