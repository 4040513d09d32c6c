"""Batching: static versus continuous, scheduler limits tuned, changes as vLLM arguments."""

from __future__ import annotations

from advisor.engine.scenario import EngineArgs, SloSpec
from advisor.engine.strategies import batching
from tests.engine.strategies.helpers import context, deployment, run


def test_it_moves_a_static_server_to_continuous_batching() -> None:
    ctx = context(
        deployment(
            "st", rate_rps=20, batching="static", replicas=8, slo=SloSpec(2.0, 0.1, min_replicas=1)
        )
    )
    result = run(batching, ctx, "st")
    assert result.status == "recommended"
    static = result.details["static"]
    tuned = result.details["continuous_tuned"]
    assert static["meets_slo"]
    assert tuned["meets_slo"]
    # the gain is what the simulator says for this workload: continuous needs fewer GPUs
    assert tuned["gpus"] < static["gpus"]
    assert tuned["slo_rps_per_replica"] > 2 * static["slo_rps_per_replica"]
    assert result.projected.gpus == tuned["gpus"]
    assert "--max-num-seqs" in result.config_change.engine_args


def test_it_says_when_todays_limits_are_already_right() -> None:
    ctx = context(deployment("light", rate_rps=0.2, engine_args=EngineArgs(max_num_seqs=256)))
    result = run(batching, ctx, "light")
    assert result.status == "not_recommended"
    assert result.config_change.engine_args == {}
    assert result.projected.gpus == 1.0
