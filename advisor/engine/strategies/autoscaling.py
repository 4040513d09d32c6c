"""Elastic scaling: replicas that follow the load (HPA / KEDA), versus fixed provisioning.

The deployment's configuration is simulated over its days of load at 1-minute resolution
under HPA semantics (`advisor.engine.autoscale`) for each target metric (queue length, KV
cache usage, GPU utilization) at targets read off its own load curve: the metric's value
when each replica carries a share of the highest rate that still meets the SLOs. Cold
starts come from the model size and the load bandwidth (or the measured figure), and
requests arriving while capacity is short queue in a backlog, so SLO attainment during
ramps is part of the answer. The cheapest policy meeting the SLOs is compared with the
fewest always-on replicas meeting them (fixed provisioning for the peak); a flat load gives
no savings and is told so. The recommended policy comes as HPA and KEDA YAML.
"""

from __future__ import annotations

import math

import numpy as np

from advisor.engine.advice import StrategyResult
from advisor.engine.autoscale import HpaPolicy, hpa_manifest, keda_manifest, metric_table
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.context import AssessmentContext, PriceBook, Resolved
from advisor.engine.redundancy import replica_floor
from advisor.engine.scenario import HPA_METRICS, DeploymentSpec, SloSpec, WorkloadSpec
from advisor.engine.strategies._common import (
    Sized,
    alternative,
    applied_to,
    change,
    cheapest,
    cold_start_s,
    common_assumptions,
    no_gain,
    row_line,
    size_fixed,
    starting_point,
    usd,
    with_policy,
)

NAME = "autoscaling"
ORDER = 3

LOAD_SHARES = (0.5, 0.7, 0.85)  # per-replica load, as a share of the SLO rate, at the target
MIN_SAVINGS = 0.01  # below this share of the fixed fleet's cost, autoscaling is not worth it


def policies(
    item: Resolved, fixed: Sized, metrics: tuple[str, ...] = HPA_METRICS
) -> list[HpaPolicy]:
    """Candidate policies: each metric at the value it takes at each load share."""
    curve = fixed.curve
    scaling = item.spec.autoscaling
    cap = scaling.max_replicas or max(2 * fixed.replicas, fixed.replicas + 2)
    rule = replica_floor(item.spec).replicas
    floors = [max(scaling.min_replicas, rule)]
    idle = bool(np.any(item.load.rate_rps == 0.0))
    if idle and floors[0] >= 1 and "min_replicas" in scaling.defaulted and rule == 0:
        floors.append(0)  # idle stretches and no minimum set: KEDA may scale to zero
    out = []
    for floor, metric in [(f, m) for f in floors for m in metrics]:
        table = metric_table(curve, metric)
        for share in LOAD_SHARES:
            target = curve.interp0(table, share * curve.slo_rps)
            if not math.isfinite(target) or target <= 1e-3:
                continue
            if metric == "gpu_utilization" and target >= 99.5:
                continue  # a busy vLLM replica reads ~100%: no signal to scale on
            out.append(
                HpaPolicy(
                    metric,
                    round(target, 3),
                    floor,
                    max(cap, floor, 1),
                    scaling.scale_up_stabilization_s,
                    scaling.scale_down_stabilization_s,
                    scaling.sync_period_s,
                )
            )
    return out


def best_policy(
    ctx: AssessmentContext,
    item: Resolved,
    config: ReplicaConfig,
    metrics: tuple[str, ...] = HPA_METRICS,
) -> tuple[Sized, Sized | None, list[Sized]]:
    """Fixed provisioning, the cheapest policy meeting the SLOs, and every policy tried."""
    fixed = size_fixed(ctx, item, config)
    if fixed.run is None or fixed.curve.slo_rps <= 0:
        return fixed, None, []
    tried = [with_policy(ctx, item, config, p) for p in policies(item, fixed, metrics)]
    return fixed, cheapest(tried), tried


def hourly_replicas(option: Sized, step_s: float) -> list[float]:
    """Mean billed replicas per hour of the load (what a chart of the week shows)."""
    if option.run is None:
        return []
    billed = option.run.billed
    per_hour = max(round(3600.0 / step_s), 1)
    hours = billed.size // per_hour
    if hours == 0:
        return [float(billed.mean())]
    return [float(x) for x in billed[: hours * per_hour].reshape(hours, per_hour).mean(axis=1)]


def evaluate(
    workload: WorkloadSpec,
    deployment: DeploymentSpec,
    prices: PriceBook | None,
    slo: SloSpec,
    *,
    context: AssessmentContext | None = None,
) -> StrategyResult:
    ctx, item, baseline = starting_point(workload, deployment, prices, slo, context)
    base = item.baseline
    fixed, best, tried = best_policy(ctx, item, base)
    start_s = cold_start_s(item, base)
    scaling = item.spec.autoscaling
    cold_note = f"cold start {start_s:.0f} s " + (
        "(measured)"
        if scaling.cold_start_s is not None
        else f"(startup {scaling.startup_overhead_s:g} s + weights at "
        f"{scaling.load_bandwidth_bytes_per_s / 1e9:g} GB/s"
        + (", defaults" if "load_bandwidth_bytes_per_s" in scaling.defaulted else "")
        + ")"
    )
    alternatives = [alternative(fixed, item, label=f"fixed: {fixed.replicas} replicas")]
    alternatives += [
        alternative(t, item, label=f"HPA on {t.policy.metric} target {t.policy.target:.3g}")
        for t in tried
        if t.policy is not None
    ]
    step_h = item.load.step_s / 3600.0
    details: dict[str, object] = {
        "cold_start_s": start_s,
        "fixed_replicas": fixed.replicas,
        "fixed_gpu_hours": (
            float(fixed.run.billed.sum()) * base.gpus * step_h if fixed.run is not None else None
        ),
        "hourly_replicas_fixed": hourly_replicas(fixed, item.load.step_s),
    }
    assumptions = (
        *common_assumptions(ctx, item),
        f"HPA sync every {scaling.sync_period_s:g} s, scale-up stabilization "
        f"{scaling.scale_up_stabilization_s:g} s, scale-down {scaling.scale_down_stabilization_s:g}"
        " s, default rate limits, 10% tolerance; " + cold_note,
        f"min {max(scaling.min_replicas, replica_floor(item.spec).replicas)} replica(s)"
        + (f", max {scaling.max_replicas}" if scaling.max_replicas else ""),
    )
    if best is None or best.run is None or best.policy is None or fixed.run is None:
        return no_gain(
            NAME, item, base, fixed, baseline, tuple(alternatives), assumptions, details,
            "no autoscaling policy meets the SLOs at this load",
        )  # fmt: skip
    policy = best.policy
    gpu_hours = float(best.run.billed.sum()) * base.gpus * step_h
    fixed_cost = fixed.run.projection.usd_per_month
    saved = fixed_cost - best.run.projection.usd_per_month
    details.update(
        {
            "policy": policy.describe(),
            "gpu_hours": gpu_hours,
            "usd_saved_per_month_vs_fixed": saved,
            "slo_attainment_during_ramps": best.run.attainment_when_starting,
            "overloaded_minutes": best.run.overloaded_steps,
            "hourly_replicas": hourly_replicas(best, item.load.step_s),
        }
    )
    if saved < MIN_SAVINGS * fixed_cost:
        return no_gain(
            NAME, item, base, fixed, baseline, tuple(alternatives), assumptions, details,
            f"the load is too flat: the best policy saves {usd(saved)}/month "
            f"({saved / fixed_cost:+.1%}) over {fixed.replicas} always-on replicas",
        )  # fmt: skip
    name = item.spec.name
    manifests = {
        f"{name}-hpa.yaml": hpa_manifest(policy, deployment=name),
        f"{name}-keda.yaml": keda_manifest(
            policy, deployment=name, model_name=item.spec.served_path
        ),
    }
    summary = (
        f"HPA on {policy.metric} at {policy.target:.3g} per replica, {policy.min_replicas}-"
        f"{policy.max_replicas} replicas: {row_line(fixed, baseline, best.run.projection)} "
        f"({fixed.replicas} always-on replicas); SLO attainment while replicas start "
        f"{best.run.attainment_when_starting:.1%}"
    )
    risks = [
        f"{cold_note}: a sharper ramp than this week's waits for it",
        "queue-length and KV-usage metrics need prometheus-adapter (HPA) or KEDA's "
        "Prometheus scaler reading vLLM's /metrics",
    ]
    notes: tuple[str, ...] = ()
    if policy.min_replicas == 0:
        risks.append("scale to zero: the first request after an idle spell waits a cold start")
        risks.append(
            "with no pod running vLLM's own metrics vanish: activate on a signal that outlives "
            "the pods (the router's or gateway's pending requests)"
        )
        notes = ("the HPA manifest keeps one replica (HPA cannot scale to zero); the KEDA one "
                 "scales to zero",)  # fmt: skip
    return StrategyResult(
        strategy=NAME,
        deployment=item.name,
        status="recommended",
        summary=summary,
        baseline=baseline,
        reference=applied_to(fixed, baseline),
        projected=best.run.projection,
        config_change=change(base, base, manifests=manifests, notes=notes),
        alternatives=tuple(alternatives),
        assumptions=assumptions,
        risks=tuple(risks),
        details=details,
    )
