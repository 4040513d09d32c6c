"""What the strategies share: today's fleet, right-sizing, config diffs as vLLM arguments.

Every strategy compares against the same two references for a deployment:

- `today`: the configuration and replicas it runs now (its current autoscaler when it has
  one), over the scenario's load — what the bill is today;
- `rightsized`: today's configuration with the fewest always-on replicas meeting the SLOs
  — so a strategy's own effect can be told from mere right-sizing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from advisor.engine.advice import Alternative, ArgValue, ConfigChange, Projection, StrategyResult
from advisor.engine.autoscale import HpaPolicy, simulate_hpa
from advisor.engine.capacity import LoadCurve, ReplicaConfig
from advisor.engine.context import AssessmentContext, PriceBook, Resolved, context_for
from advisor.engine.fleet import FleetRun, evaluate_fleet, fixed_fleet
from advisor.engine.perf import weight_bytes
from advisor.engine.prefix_cache import prefix_reuse_assumption
from advisor.engine.redundancy import replica_floor
from advisor.engine.routing import routing_assumptions
from advisor.engine.scenario import DeploymentSpec, SloSpec, WorkloadSpec


@dataclass(frozen=True, eq=False)
class Sized:
    """A configuration with its fleet: replicas (always on) or an autoscaling policy."""

    config: ReplicaConfig
    curve: LoadCurve
    run: FleetRun | None  # None when the configuration cannot serve at all
    replicas: int
    policy: HpaPolicy | None = None

    @property
    def projection(self) -> Projection | None:
        return self.run.projection if self.run is not None else None

    @property
    def meets(self) -> bool:
        return self.run is not None and self.run.projection.meets_slo

    @property
    def usd_per_month(self) -> float:
        return self.run.projection.usd_per_month if self.run is not None else math.inf


def size_fixed(
    ctx: AssessmentContext,
    item: Resolved,
    config: ReplicaConfig,
    *,
    redundancy: bool = True,
    max_replicas: int | None = None,
) -> Sized:
    """The fewest always-on replicas of `config` meeting the deployment's SLOs, and at least
    the redundancy rule's minimum (`redundancy=False`: what the load alone needs); at most
    `max_replicas` (e.g. a GPU kind's count limit) besides the deployment's own maximum."""
    curve = ctx.curve(item, config)
    if not curve.feasible:
        return Sized(config, curve, None, 0)
    floor = replica_floor(item.spec).replicas if redundancy else 0
    replicas, run = fixed_fleet(
        curve,
        item.load,
        ctx.economics(item, config),
        item.slo,
        mean_output_tokens=item.shape.mean_output_tokens,
        min_replicas=max(item.spec.autoscaling.min_replicas, 1, floor),
        max_replicas=min(
            (m for m in (item.spec.autoscaling.max_replicas, max_replicas) if m is not None),
            default=None,
        ),
    )
    return Sized(config, curve, run, replicas)


def with_replicas(
    ctx: AssessmentContext, item: Resolved, config: ReplicaConfig, replicas: int
) -> Sized:
    curve = ctx.curve(item, config)
    if not curve.feasible:
        return Sized(config, curve, None, replicas)
    counts = np.full(item.load.rate_rps.size, float(replicas))
    run = evaluate_fleet(
        curve,
        item.load,
        counts,
        counts,
        ctx.economics(item, config),
        item.slo,
        mean_output_tokens=item.shape.mean_output_tokens,
    )
    return Sized(config, curve, run, replicas)


def cold_start_s(item: Resolved, config: ReplicaConfig) -> float:
    """Measured cold start, else startup overhead + all weights / load bandwidth."""
    scaling = item.spec.autoscaling
    if scaling.cold_start_s is not None:
        return scaling.cold_start_s
    weights = weight_bytes(config.model, config.deployment().quant)
    return scaling.startup_overhead_s + weights / scaling.load_bandwidth_bytes_per_s


def with_policy(
    ctx: AssessmentContext, item: Resolved, config: ReplicaConfig, policy: HpaPolicy
) -> Sized:
    curve = ctx.curve(item, config)
    if not curve.feasible:
        return Sized(config, curve, None, 0, policy)
    ready, billed = simulate_hpa(curve, item.load, policy, cold_start_s=cold_start_s(item, config))
    run = evaluate_fleet(
        curve,
        item.load,
        ready,
        billed,
        ctx.economics(item, config),
        item.slo,
        mean_output_tokens=item.shape.mean_output_tokens,
    )
    return Sized(config, curve, run, int(billed.max()), policy)


def current_policy(item: Resolved, cap: int) -> HpaPolicy | None:
    scaling = item.spec.autoscaling
    if not scaling.enabled or scaling.target is None:
        return None
    return HpaPolicy(
        scaling.metric,
        scaling.target,
        scaling.min_replicas,
        scaling.max_replicas or cap,
        scaling.scale_up_stabilization_s,
        scaling.scale_down_stabilization_s,
        scaling.sync_period_s,
    )


def today(ctx: AssessmentContext, item: Resolved) -> Sized:
    """Today's configuration and replicas (or today's autoscaler) over the load."""
    policy = current_policy(item, max(item.spec.replicas, 1) * 4)
    if policy is not None:
        return with_policy(ctx, item, item.baseline, policy)
    return with_replicas(ctx, item, item.baseline, item.spec.replicas)


def rightsized(ctx: AssessmentContext, item: Resolved) -> Sized:
    return size_fixed(ctx, item, item.baseline)


def cheapest(options: list[Sized]) -> Sized | None:
    """The cheapest option meeting the SLOs.

    Ties on cost (replicas come in whole numbers) go to the most headroom: the highest rate
    per GPU that still meets the SLOs; then the lower TPOT p95.
    """
    good = [o for o in options if o.meets and o.projection is not None]
    if not good:
        return None

    def key(option: Sized) -> tuple[float, float, float]:
        p = option.projection
        assert p is not None
        headroom = option.curve.slo_rps / option.config.gpus
        return (round(p.usd_per_month, 2), -round(headroom, 3), p.tpot_p95_s)

    return min(good, key=key)


def closest(options: list[Sized]) -> Sized | None:
    """The option closest to meeting the latency SLOs (smallest worst ratio to a target)."""
    runnable = [o for o in options if o.projection is not None]
    if not runnable:
        return None

    def badness(option: Sized) -> tuple[float, float]:
        p = option.projection
        assert p is not None
        return (1.0 - p.slo_attainment, p.usd_per_month)

    return min(runnable, key=badness)


def engine_args(base: ReplicaConfig, new: ReplicaConfig) -> dict[str, ArgValue]:
    """The vLLM command-line arguments that turn `base` into `new` (changed ones only)."""
    out: dict[str, ArgValue] = {}
    if new.weight_dtype != base.weight_dtype:
        scheme = new.deployment().quant
        if scheme.vllm_quantization:
            out["--quantization"] = scheme.vllm_quantization
    if new.kv_cache_dtype != base.kv_cache_dtype:
        out["--kv-cache-dtype"] = new.kv_cache_dtype
    if new.tensor_parallel != base.tensor_parallel:
        out["--tensor-parallel-size"] = new.tensor_parallel
    if new.max_num_seqs != base.max_num_seqs or new.batching != base.batching:
        out["--max-num-seqs"] = new.max_num_seqs
    if new.max_num_batched_tokens != base.max_num_batched_tokens:
        out["--max-num-batched-tokens"] = new.max_num_batched_tokens
    if new.enable_chunked_prefill != base.enable_chunked_prefill:
        out["--enable-chunked-prefill"] = new.enable_chunked_prefill
    if new.gpu_memory_utilization != base.gpu_memory_utilization:
        out["--gpu-memory-utilization"] = new.gpu_memory_utilization
    if new.spec != base.spec:
        out["--speculative-config"] = speculative_json(new) if new.spec is not None else "null"
    return out


def speculative_json(
    config: ReplicaConfig,
    draft_path: str | None = None,
    *,
    disable_by_batch_size: int | None = None,
) -> str:
    """The `--speculative-config` JSON for `config` (compact, keys in a stable order)."""
    spec = config.spec
    assert spec is not None
    body: dict[str, object] = {
        "method": spec.drafter.method,
        "num_speculative_tokens": spec.num_speculative_tokens,
    }
    if spec.drafter.method in ("ngram", "suffix"):
        body["prompt_lookup_max"] = 4
        body["prompt_lookup_min"] = 2
    elif draft_path:
        body["model"] = draft_path
    if disable_by_batch_size is not None:
        body["disable_by_batch_size"] = disable_by_batch_size
    return json.dumps(body, separators=(",", ":"))


def alternative(
    option: Sized, item: Resolved, *, label: str | None = None, reason: str = ""
) -> Alternative:
    config = option.config.describe()
    if option.config.hardware != item.hardware:
        config["hardware"] = option.config.hardware.name
    config["replicas"] = option.replicas
    if option.policy is not None:
        config["autoscaling"] = option.policy.describe()
    name = label or option.config.label()
    if not option.curve.feasible or option.projection is None:
        return Alternative(name, config, None, False, reason or option.curve.reason)
    why = reason or ("" if option.meets else miss_reason(option.projection, item))
    return Alternative(name, config, option.projection, option.meets, why)


def miss_reason(p: Projection, item: Resolved) -> str:
    """Which objective a projection misses, in words with the figures."""
    slo = item.spec.slo
    parts = []
    if -p.quality_delta_points > slo.max_quality_loss_points + 1e-12:
        parts.append(
            f"quality loss {-p.quality_delta_points:.1f} points > allowed "
            f"{slo.max_quality_loss_points:g}"
        )
    if p.ttft_p95_s > slo.ttft_p95_s:
        parts.append(f"TTFT p95 {ms(p.ttft_p95_s)} > {ms(slo.ttft_p95_s)}")
    if p.tpot_p95_s > slo.tpot_p95_s:
        parts.append(f"TPOT p95 {ms(p.tpot_p95_s)} > {ms(slo.tpot_p95_s)}")
    return "; ".join(parts) or "meets the SLOs"


def ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unbounded (saturated)"
    return f"{seconds * 1e3:.0f} ms" if seconds < 10 else f"{seconds:.0f} s"


def usd(value: float) -> str:
    """$14,355 / -$4,060 (the sign before the dollar); "n/a" when not finite."""
    if not math.isfinite(value):
        return "n/a"
    return ("-" if round(value) < 0 else "") + f"${abs(value):,.0f}"


def change(
    base: ReplicaConfig,
    new: ReplicaConfig,
    *,
    replicas: int | None = None,
    model_path: str | None = None,
    notes: tuple[str, ...] = (),
    manifests: dict[str, str] | None = None,
) -> ConfigChange:
    return ConfigChange(
        engine_args=engine_args(base, new),
        model_path=model_path,
        replicas=replicas,
        tensor_parallel=new.tensor_parallel
        if new.tensor_parallel != base.tensor_parallel
        else None,
        manifests=manifests or {},
        notes=notes,
    )


CENT = 0.005  # monthly cost differences below this are no difference
RIGHT_SIZED = "today's configuration right-sized"


def gain_line(reference: Projection, new: Projection, *, against: str = RIGHT_SIZED) -> str:
    """What `new` saves (or costs more) a month over `reference`, in words with the figures."""
    saved = reference.usd_per_month - new.usd_per_month
    share = abs(saved) / reference.usd_per_month if reference.usd_per_month > 0 else 0.0
    where = f"{against} ({reference.gpus:.1f} GPUs, {usd(reference.usd_per_month)}/month)"
    if saved > CENT:
        return f"saves {usd(saved)}/month ({share:.0%}) over {where}"
    if saved < -CENT:
        return f"costs {usd(-saved)}/month ({share:.0%}) more than {where}"
    return f"saves nothing over {where}"


def applied_to(reference: Sized, baseline: Projection) -> Projection:
    """What a strategy's row is measured against: `reference` (today's configuration
    right-sized) where it meets the SLOs, else today's own projection."""
    return reference.projection if reference.meets and reference.projection else baseline


def row_line(reference: Sized, baseline: Projection, new: Projection) -> str:
    """What a strategy's configuration adds, against what it is applied to (`applied_to`)."""
    if reference.meets and reference.projection is not None:
        return gain_line(reference.projection, new)
    return "meets the SLOs, which today's configuration misses at any replica count; " + (
        gain_line(baseline, new, against="today's configuration")
    )


def common_assumptions(ctx: AssessmentContext, item: Resolved) -> tuple[str, ...]:
    """What every projection for this deployment rests on, in words."""
    profile = item.profile
    fit = (
        f", fit median error {profile.fit_median_ape:.0%} on {profile.fit_points} points"
        if profile.fit_median_ape is not None
        else ""
    )
    price = ctx.prices.entry(item.hardware)
    out = [
        f"step times from the calibration profile for ({profile.hardware}, {profile.engine}): "
        f"{profile.source}{fit}",
        f"load curves from {item.shape.base.num_requests} requests bootstrapped from your "
        f"{item.spec.workload.sample.num_requests}-request sample (lengths and arrival gaps "
        "kept); requests spread evenly over replicas",
        f"load: {item.load.rate_rps.size} steps of {item.load.step_s:g} s, mean "
        f"{item.load.mean_rps:.3g} req/s, peak {item.load.peak_rps:.3g} req/s",
        f"price {item.hardware.name}: ${price.usd_per_gpu_hour:g}/GPU-hour ({price.source})"
        + (" [default]" if price.defaulted else ""),
    ]
    out.append(prefix_reuse_assumption(item.spec.workload.sample))
    out += routing_assumptions(
        item.spec.routing, kv_offload_gib=item.spec.engine_args.kv_offload_gib
    )
    slo = item.spec.slo
    if slo.defaulted:
        out.append("SLO defaults used for: " + ", ".join(slo.defaulted))
    out.append(f"redundancy: {replica_floor(item.spec).text}")
    return tuple(out)


def cost_only(ctx: AssessmentContext, item: Resolved) -> Projection:
    """Today's cost when today's configuration cannot be simulated (latencies unknown)."""
    gpus = float(item.spec.gpus)
    usd_hour = gpus * ctx.prices.usd_per_gpu_hour(item.hardware)
    nan = math.nan
    return Projection(
        gpus=gpus,
        gpus_peak=gpus,
        utilization=nan,
        busy_fraction=nan,
        ttft_p50_s=nan,
        ttft_p95_s=nan,
        tpot_p50_s=nan,
        tpot_p95_s=nan,
        slo_attainment=0.0,
        usd_per_hour=usd_hour,
        usd_per_month=usd_hour * ctx.options.hours_per_month,
        usd_per_1m_output_tokens=nan,
        energy_j_per_output_token=nan,
        requests_per_s=item.load.mean_rps,
        output_tokens_per_s=item.load.mean_rps * item.shape.mean_output_tokens,
        meets_slo=False,
    )


def baseline_projection(ctx: AssessmentContext, item: Resolved, now: Sized) -> Projection:
    return now.projection if now.projection is not None else cost_only(ctx, item)


def starting_point(
    workload: WorkloadSpec,
    deployment: DeploymentSpec,
    prices: PriceBook | None,
    slo: SloSpec,
    context: AssessmentContext | None,
) -> tuple[AssessmentContext, Resolved, Projection]:
    """What every strategy's `evaluate` starts from: its context, the deployment, today's bill.

    The arguments are `evaluate`'s own (see `context_for`). The projection is today's
    configuration and replicas (or today's autoscaler) over the load, or only today's cost
    when that configuration cannot be simulated (`cost_only`): the baseline every strategy
    result reports against.
    """
    ctx, item = context_for(workload, deployment, prices, slo, context)
    return ctx, item, baseline_projection(ctx, item, today(ctx, item))


def beats(option: Sized, reference: Sized) -> bool:
    """Whether `option` is a real improvement on `reference` (cheaper, or meets where it cannot)."""
    if not option.meets or option.projection is None:
        return False
    if not reference.meets or reference.projection is None:
        return True
    return option.projection.usd_per_month < reference.projection.usd_per_month - 0.005


def no_gain(
    strategy: str,
    item: Resolved,
    base: ReplicaConfig,
    reference: Sized,
    baseline: Projection,
    alternatives: tuple[Alternative, ...],
    assumptions: tuple[str, ...],
    details: dict[str, object],
    why: str,
    risks: tuple[str, ...] = (),
) -> StrategyResult:
    """A strategy that does not beat today's configuration at its right size: say so.

    Its projection is what it is applied to (`applied_to`), so its row adds nothing.
    """
    projected = applied_to(reference, baseline)
    line = (
        gain_line(projected, projected)
        if reference.meets
        else "today's configuration misses the SLOs at any replica count"
    )
    return StrategyResult(
        strategy=strategy,
        deployment=item.name,
        status="not_recommended",
        summary=f"not recommended: {why}; {line}",
        baseline=baseline,
        reference=projected,
        projected=projected,
        config_change=change(base, base, replicas=reference.replicas if reference.meets else None),
        alternatives=alternatives,
        assumptions=assumptions,
        risks=risks,
        details=details,
    )


STATIC_NOTE = (
    "today's server batches statically (not vLLM): precision and speculative-decoding advice "
    "applies once it runs vLLM's continuous batching (see the batching strategy); the planner "
    "combines them"
)


def not_applicable(
    ctx: AssessmentContext, strategy: str, item: Resolved, baseline: Projection, why: str
) -> StrategyResult:
    return StrategyResult(
        strategy=strategy,
        deployment=item.name,
        status="not_applicable",
        summary=f"not applicable: {why}",
        baseline=baseline,
        reference=baseline,
        projected=baseline,
        config_change=ConfigChange(),
        assumptions=common_assumptions(ctx, item),
    )
