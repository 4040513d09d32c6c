"""Elastic scaling: HPA over days of load saves on a diurnal load, nothing on a flat one."""

from __future__ import annotations

import pytest
import yaml

from advisor.engine.perf import weight_bytes
from advisor.engine.scenario import AutoscalingSpec, EngineArgs, SloSpec, diurnal_load
from advisor.engine.strategies import autoscaling
from advisor.engine.strategies._common import cold_start_s, usd
from tests.engine.strategies.helpers import context, deployment, diurnal, flat, run


def test_it_finds_no_savings_on_a_flat_load() -> None:
    ctx = context(
        deployment("flat", rate_rps=150, load=flat(150), replicas=6, slo=SloSpec(2.0, 0.05))
    )
    result = run(autoscaling, ctx, "flat")
    assert result.status == "not_recommended"
    assert "flat" in result.summary
    assert result.details["usd_saved_per_month_vs_fixed"] <= 0.0
    assert result.config_change.manifests == {}


def test_it_saves_on_a_diurnal_load_and_writes_the_manifests() -> None:
    ctx = context(
        deployment("day", rate_rps=150, load=diurnal(150, 5.0), replicas=6, slo=SloSpec(2.0, 0.05))
    )
    result = run(autoscaling, ctx, "day")
    assert result.status == "recommended"
    saved = result.details["usd_saved_per_month_vs_fixed"]
    assert saved > 0
    assert result.projected.meets_slo
    assert result.details["gpu_hours"] < result.details["fixed_gpu_hours"]
    hourly = result.details["hourly_replicas"]
    assert max(hourly) > min(hourly)  # replicas follow the day
    hpa = yaml.safe_load(result.config_change.manifests["day-hpa.yaml"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    keda = yaml.safe_load(result.config_change.manifests["day-keda.yaml"])
    assert keda["kind"] == "ScaledObject"
    assert keda["spec"]["triggers"][0]["type"] == "prometheus"
    assert keda["spec"]["maxReplicaCount"] == hpa["spec"]["maxReplicas"]


def test_it_derives_the_cold_start_from_model_size_and_load_bandwidth() -> None:
    ctx = context(deployment("c", rate_rps=1.0))
    item = ctx.resolved["c"]
    weights = weight_bytes(item.model, item.baseline.deployment().quant)
    assert cold_start_s(item, item.baseline) == pytest.approx(60.0 + weights / 2e9)


def test_it_scales_an_idle_nightly_job_to_zero_unless_a_minimum_is_set() -> None:
    night = diurnal_load(None, days=2, mean_rps=3.0, active_hours_utc=(0.0, 6.0))
    # no redundancy rule (today's 2 replicas would otherwise keep 2 by default)
    free = SloSpec(min_replicas=0)
    ctx = context(deployment("night", rate_rps=3.0, load=night, replicas=2, slo=free))
    result = run(autoscaling, ctx, "night")
    assert result.status == "recommended"
    assert result.details["policy"]["min_replicas"] == 0
    keda = yaml.safe_load(result.config_change.manifests["night-keda.yaml"])
    assert keda["spec"]["minReplicaCount"] == 0
    assert result.projected.gpus < 1.0  # off for most of the day
    assert result.details["slo_attainment_during_ramps"] < 1.0  # first requests wait
    assert any("cold start" in risk for risk in result.risks)

    kept = context(
        deployment("night", rate_rps=3.0, load=night, replicas=2, slo=free,
                   autoscaling=AutoscalingSpec(min_replicas=1)),
    )  # fmt: skip
    floor = run(autoscaling, kept, "night")
    assert floor.details.get("policy", {"min_replicas": 1})["min_replicas"] == 1


def test_the_redundancy_rule_sets_the_autoscaling_minimum() -> None:
    night = diurnal_load(None, days=2, mean_rps=3.0, active_hours_utc=(0.0, 6.0))
    for slo, expected in ((SloSpec(), 2), (SloSpec(min_replicas=3), 3)):
        ctx = context(deployment("night", rate_rps=3.0, load=night, replicas=2, slo=slo))
        item = ctx.resolved["night"]
        fixed, _best, _tried = autoscaling.best_policy(ctx, item, item.baseline)
        candidates = autoscaling.policies(item, fixed)
        assert {p.min_replicas for p in candidates} == {expected}
        result = run(autoscaling, ctx, "night")
        assert result.details.get("policy", {"min_replicas": expected})["min_replicas"] == expected
        assert result.details["fixed_replicas"] >= expected


def test_it_shows_no_gain_where_today_is_short_of_replicas() -> None:
    # today's one replica misses the SLOs; right-sized it needs 3, which autoscaling cannot beat
    # on a flat load: the row adds nothing (it once read "-200% saved" against today's one)
    hot = deployment(
        "hot", rate_rps=20.0, engine_args=EngineArgs(max_num_seqs=8), slo=SloSpec(2.0, 0.05, 1.0)
    )
    result = run(autoscaling, context(hot), "hot")
    assert result.status == "not_recommended"
    assert (result.baseline.gpus, result.reference.gpus, result.projected.gpus) == (1.0, 3.0, 3.0)
    assert result.added_usd_per_month == 0.0
    assert "-200%" not in result.summary
    assert result.summary.endswith(
        "; saves nothing over today's configuration right-sized (3.0 GPUs, "
        f"{usd(result.reference.usd_per_month)}/month)"
    )
