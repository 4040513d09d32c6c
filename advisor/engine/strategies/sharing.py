"""Multi-model GPU sharing: co-location (VRAM packing, pooling small models) and rotation.

Works on the whole fleet: `plan_sharing(ctx, fleets)` takes each deployment's sized fleet
(its configuration and replicas over the load) and finds, per hardware kind:

1. Co-location: single-replica, single-GPU deployments packed onto shared GPUs (first fit,
   largest first). A GPU takes a set when their weights, workspace and the KV cache each
   needs at its peak (with a margin) fit in its memory, and the busy fractions add up to
   less than one: each member's steps then wait for the others' (time slicing), which
   stretches its TTFT and TPOT by 1 / (1 - the others' busy fraction); the set must still
   meet every member's SLOs. Memory headroom and the OOM risk are reported.
2. Rotation with hot loading: deployments idle for stretches (no requests for longer than
   the keep-warm window) release their GPUs, parked with vLLM sleep mode (weights to host
   memory) and woken on the next request; a pool of GPUs sized for the busiest minute of
   the members together serves models used at staggered times. The first requests after a
   wake wait for it (estimated from the weights per GPU over host-to-device bandwidth; cold
   start where sleep mode is unavailable) and count against SLO attainment.

`evaluate(...)` runs the plan on every deployment's right-sized current configuration (so the
strategy's own effect shows) and reports the group this deployment is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from advisor.engine.advice import Projection, StrategyResult
from advisor.engine.catalog import GIB
from advisor.engine.context import AssessmentContext, PriceBook, Resolved
from advisor.engine.perf import DEFAULT_WORKSPACE_FIXED_BYTES, memory_plan
from advisor.engine.redundancy import replica_floor
from advisor.engine.scenario import DeploymentSpec, PowerEntry, SloSpec, WorkloadSpec
from advisor.engine.strategies._common import (
    CENT,
    Sized,
    applied_to,
    change,
    cold_start_s,
    common_assumptions,
    miss_reason,
    ms,
    rightsized,
    row_line,
    starting_point,
)

NAME = "sharing"
ORDER = 5

KV_MARGIN = 1.25  # KV reserved per co-located model: its peak need x this margin
MAX_BUSY = 0.9  # co-located busy fractions must add up below this
KEEP_WARM_S = 600.0  # an idle model keeps its GPU this long before it is put to sleep
HOST_TO_DEVICE_BYTES_PER_S = 25e9  # PCIe Gen4 x16 effective, for waking from sleep level 1
WAKE_FIXED_S = 0.5
WAKE_SOURCE = (
    "estimate: weights per GPU over 25 GB/s host-to-device plus 0.5 s; vLLM blog 2025-10-26 "
    "measured wakes from sleep level 1 of 0.26 s (Qwen3-0.6B) to 5.7 s (Qwen3-235B, TP4) on A100"
)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Group:
    """A set of deployments sharing GPUs, and what it changes."""

    kind: str  # "co-location" or "rotation"
    hardware: str
    members: tuple[str, ...]
    gpus_before: float
    gpus_after: float
    memory_headroom: float = math.nan  # share of GPU memory left free (co-location)
    stretch: dict[str, float] = field(default_factory=dict)  # latency factor per member
    wake_s: dict[str, float] = field(default_factory=dict)
    affected_share: dict[str, float] = field(default_factory=dict)  # requests hit by a wake
    memory_share: dict[str, float] = field(default_factory=dict)  # gpu_memory_utilization

    @property
    def gpus_saved(self) -> float:
        return self.gpus_before - self.gpus_after

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "hardware": self.hardware,
            "members": list(self.members),
            "gpus_before": self.gpus_before,
            "gpus_after": self.gpus_after,
            "gpus_saved": self.gpus_saved,
            "memory_headroom": self.memory_headroom,
            "latency_stretch": self.stretch,
            "wake_s": self.wake_s,
            "requests_hit_by_wake": self.affected_share,
            "gpu_memory_utilization": self.memory_share,
        }


@dataclass(frozen=True)
class SharingPlan:
    groups: tuple[Group, ...]
    projections: dict[str, Projection]  # per member, after sharing
    declined: dict[str, str] = field(default_factory=dict)  # per non-member: why, in words

    def group_of(self, name: str) -> Group | None:
        return next((g for g in self.groups if name in g.members), None)

    @property
    def gpus_saved(self) -> float:
        return sum(g.gpus_saved for g in self.groups)


def _memory_need_bytes(option: Sized, item: Resolved) -> tuple[float, float]:
    """(bytes this replica needs on its GPU, KV bytes of that) at its peak load."""
    config = option.config
    plan = memory_plan(
        config.deployment(),
        max_num_batched_tokens=config.max_num_batched_tokens,
        max_num_seqs=config.max_num_seqs,
    )
    curve = option.curve
    peak = item.load.peak_rps / max(option.replicas, 1)
    kv_share = min(curve.interp0(curve.kv_usage, min(peak, curve.top_rps)), 1.0)
    kv_bytes = kv_share * plan.kv_capacity_tokens * plan.kv_bytes_per_token_per_gpu * KV_MARGIN
    longest = item.spec.workload.sample.prompt_tokens + item.spec.workload.sample.output_tokens
    kv_bytes = max(kv_bytes, float(longest.max()) * plan.kv_bytes_per_token_per_gpu)
    workspace = max(plan.workspace_bytes_per_gpu, float(DEFAULT_WORKSPACE_FIXED_BYTES))
    return plan.weight_bytes_per_gpu + workspace + kv_bytes, kv_bytes


def _busy_at_peak(option: Sized, item: Resolved) -> float:
    curve = option.curve
    peak = item.load.peak_rps / max(option.replicas, 1)
    return float(curve.interp0(curve.busy_fraction, min(peak, curve.top_rps)))


def _stretched(
    p: Projection,
    stretch: float,
    gpus: float,
    usd_per_gpu_hour: float,
    hours: float,
    power: PowerEntry,
) -> Projection:
    """`p` on `gpus` shared GPUs: latencies x `stretch`, cost and idle power for `gpus`.

    The busy power is what it draws alone (the same kernels run, only interleaved).
    """
    usd_hour = gpus * usd_per_gpu_hour
    tokens_per_hour = p.output_tokens_per_s * 3600.0
    watts = gpus * power.idle_w + p.gpus * p.busy_fraction * (power.max_w - power.idle_w)
    return replace(
        p,
        gpus=gpus,
        gpus_peak=gpus,
        ttft_p50_s=p.ttft_p50_s * stretch,
        ttft_p95_s=p.ttft_p95_s * stretch,
        tpot_p50_s=p.tpot_p50_s * stretch,
        tpot_p95_s=p.tpot_p95_s * stretch,
        usd_per_hour=usd_hour,
        usd_per_month=usd_hour * hours,
        usd_per_1m_output_tokens=usd_hour / tokens_per_hour * 1e6
        if tokens_per_hour > 0
        else math.inf,
        utilization=p.utilization * p.gpus / gpus if gpus > 0 else p.utilization,
        energy_kwh_per_month=watts * hours / 1000.0,
        energy_j_per_output_token=watts / p.output_tokens_per_s
        if p.output_tokens_per_s > 0
        else math.inf,
    )


def _co_locatable(
    items: list[Resolved], fleets: dict[str, Sized]
) -> tuple[list[Resolved], dict[str, float], dict[str, float]]:
    """The single-GPU, single-replica, always-on deployments co-location may pack, with each
    one's memory need (bytes) and busy share at its peak."""
    singles = [
        i
        for i in items
        if fleets[i.name].projection is not None
        and fleets[i.name].replicas == 1
        and fleets[i.name].config.tensor_parallel == 1
        and fleets[i.name].policy is None
    ]
    needs = {i.name: _memory_need_bytes(fleets[i.name], i)[0] for i in singles}
    busy = {i.name: _busy_at_peak(fleets[i.name], i) for i in singles}
    return singles, needs, busy


def _colocate(
    ctx: AssessmentContext, items: list[Resolved], fleets: dict[str, Sized]
) -> tuple[list[Group], dict[str, Projection]]:
    """First-fit-decreasing packing of single-GPU, single-replica deployments."""
    groups: list[Group] = []
    projections: dict[str, Projection] = {}
    singles, needs, busy = _co_locatable(items, fleets)
    by_hardware: dict[str, list[Resolved]] = {}
    for item in singles:
        by_hardware.setdefault(fleets[item.name].config.hardware.name, []).append(item)
    for hardware_name, members in by_hardware.items():
        hardware = fleets[members[0].name].config.hardware
        usable = hardware.memory_bytes * 0.9
        bins: list[list[Resolved]] = []
        for item in sorted(members, key=lambda i: -needs[i.name]):
            for bin_ in bins:
                trial = [*bin_, item]
                if _fits(trial, needs, busy, usable, fleets):
                    bin_.append(item)
                    break
            else:
                bins.append([item])
        price = ctx.prices.usd_per_gpu_hour(hardware)
        for bin_ in bins:
            if len(bin_) < 2:
                continue
            total_busy = sum(busy[i.name] for i in bin_)
            used = sum(needs[i.name] for i in bin_)
            stretch = {i.name: 1.0 / (1.0 - (total_busy - busy[i.name])) for i in bin_}
            share = {i.name: needs[i.name] / hardware.memory_bytes for i in bin_}
            group = Group(
                "co-location",
                hardware_name,
                tuple(i.name for i in bin_),
                float(len(bin_)),
                1.0,
                memory_headroom=1.0 - used / hardware.memory_bytes,
                stretch=stretch,
                memory_share={k: round(v, 3) for k, v in share.items()},
            )
            groups.append(group)
            for item in bin_:
                p = fleets[item.name].projection
                assert p is not None
                projections[item.name] = _stretched(
                    p, stretch[item.name], share[item.name] / sum(share.values()), price,
                    ctx.options.hours_per_month, ctx.power(hardware),
                )  # fmt: skip
    return groups, projections


def _fits(
    trial: list[Resolved],
    needs: dict[str, float],
    busy: dict[str, float],
    usable: float,
    fleets: dict[str, Sized],
) -> bool:
    return not _misfit(trial, needs, busy, usable, fleets)


def _misfit(
    trial: list[Resolved],
    needs: dict[str, float],
    busy: dict[str, float],
    usable: float,
    fleets: dict[str, Sized],
) -> str:
    """Why `trial` cannot share one GPU, in words with the figures ("" when it can)."""
    names = [i.name for i in trial]
    total = sum(needs[n] for n in names)
    if total > usable:
        each = ", ".join(f"{n} {gib(needs[n])}" for n in names)
        return f"memory does not fit: {each} = {gib(total)} > {gib(usable)} usable"
    total_busy = sum(busy[n] for n in names)
    if total_busy >= MAX_BUSY:
        each = " + ".join(f"{n} {busy[n]:.0%}" for n in names)
        return f"too busy together: {each} busy at peak >= {MAX_BUSY:.0%}"
    for item in trial:
        stretch = 1.0 / (1.0 - (total_busy - busy[item.name]))
        p = fleets[item.name].projection
        assert p is not None
        for label, value, target in (
            ("TTFT", p.ttft_p95_s, item.slo.ttft_p95_s),
            ("TPOT", p.tpot_p95_s, item.slo.tpot_p95_s),
        ):
            if value * stretch > target:
                return (
                    f"the SLO would break: time slicing stretches {item.name}'s {label} p95 "
                    f"{ms(value)} x{stretch:.2f} = {ms(value * stretch)} > {ms(target)}"
                )
    return ""


def _colocation_declined(
    items: list[Resolved], fleets: dict[str, Sized], groups: list[Group]
) -> dict[str, str]:
    """Why each deployment left out of co-location is left out (see `_colocate`'s rules)."""
    out: dict[str, str] = {}
    taken = {name for g in groups for name in g.members}
    by_name = {i.name: i for i in items}
    singles, needs, busy = _co_locatable(items, fleets)
    for item in items:
        if item.name in taken:
            continue
        option = fleets[item.name]
        if option.projection is None:
            out[item.name] = "today's configuration cannot serve its load"
            continue
        if option.config.tensor_parallel > 1:
            out[item.name] = (
                f"each replica spans {option.config.tensor_parallel} GPUs (tensor parallel); "
                "only single-GPU replicas are co-located"
            )
            continue
        if option.policy is not None:
            out[item.name] = "it autoscales; only always-on single replicas are co-located"
            continue
        if option.replicas > 1:
            out[item.name] = (
                f"it needs {option.replicas} replicas at its peak; only single-replica "
                "deployments are co-located"
            )
            continue
        hardware = option.config.hardware
        trials = [
            [item, *(by_name[name] for name in g.members)]
            for g in groups
            if g.hardware == hardware.name
        ]
        trials += [
            [item, i]
            for i in singles
            if i.name != item.name
            and i.name not in taken
            and fleets[i.name].config.hardware == hardware
        ]
        if not trials:
            out[item.name] = (
                f"no other single-GPU, single-replica deployment runs on {hardware.name}"
            )
            continue
        usable = hardware.memory_bytes * 0.9
        reasons = []
        for trial in trials[:3]:
            others = " + ".join(i.name for i in trial[1:])
            why = _misfit(trial, needs, busy, usable, fleets) or "first-fit packing left it out"
            reasons.append(f"with {others} on one {hardware.name}: {why}")
        more = f"; and {len(trials) - 3} more" if len(trials) > 3 else ""
        out[item.name] = "; ".join(reasons) + more
    return out


def wake_s(item: Resolved, option: Sized) -> float:
    """Time to wake a sleeping replica (cold start where sleep mode is unavailable)."""
    if option.config.hardware.kind == "cpu":
        return cold_start_s(item, option.config)
    plan = memory_plan(
        option.config.deployment(),
        max_num_batched_tokens=option.config.max_num_batched_tokens,
        max_num_seqs=option.config.max_num_seqs,
    )
    return WAKE_FIXED_S + plan.weight_bytes_per_gpu / HOST_TO_DEVICE_BYTES_PER_S


def _active(rate: FloatArray, step_s: float) -> FloatArray:
    """1 where a request arrived within the keep-warm window up to this step, else 0."""
    busy = rate > 0
    window = max(math.ceil(KEEP_WARM_S / step_s), 1)
    index = np.where(busy, np.arange(rate.size), -(10**9))
    last = np.maximum.accumulate(index)
    return ((np.arange(rate.size) - last) < window).astype(np.float64)


def _rotate(
    ctx: AssessmentContext,
    items: list[Resolved],
    fleets: dict[str, Sized],
    taken: set[str],
    declined: dict[str, str],
) -> tuple[list[Group], dict[str, Projection]]:
    """Pool the GPUs of deployments that sleep while idle, per hardware kind.

    Writes why each deployment it leaves out is left out into `declined`.
    """
    groups: list[Group] = []
    projections: dict[str, Projection] = {}
    by_hardware: dict[str, list[Resolved]] = {}
    for item in items:
        option = fleets[item.name]
        if item.name in taken or option.run is None:
            continue
        floor = replica_floor(item.spec)
        if floor.replicas > 0:
            declined[item.name] = f"the redundancy rule keeps {floor.text} awake"
            continue
        if (
            item.load.step_s != items[0].load.step_s
            or item.load.rate_rps.size != items[0].load.rate_rps.size
        ):
            declined[item.name] = "its load history has other steps than the others'"
            continue
        by_hardware.setdefault(option.config.hardware.name, []).append(item)
    for hardware_name, members in by_hardware.items():
        if len(members) < 2:
            declined[members[0].name] = f"no other deployment on {hardware_name} to pool with"
            continue
        step = members[0].load.step_s
        usage: dict[str, FloatArray] = {}
        for item in members:
            option = fleets[item.name]
            assert option.run is not None
            usage[item.name] = (
                option.run.billed * option.config.gpus * _active(item.load.rate_rps, step)
            )
        dedicated = 0.0  # what the members' own fleets use on average (their cost)
        for member in members:
            run = fleets[member.name].run
            assert run is not None
            dedicated += float(run.billed.mean()) * fleets[member.name].config.gpus
        idle_ones = [i for i in members if usage[i.name].min() == 0.0]
        if not idle_ones:
            for item in members:
                declined[item.name] = (
                    f"no deployment on {hardware_name} goes {KEEP_WARM_S / 60:g} minutes "
                    "without a request, so none can sleep"
                )
            continue
        together = np.sum(np.stack(list(usage.values())), axis=0)
        pooled = math.ceil(float(together.max()) - 1e-9)
        if pooled >= dedicated:
            for item in members:
                declined[item.name] = (
                    f"a pool for the busiest minute would need {pooled} {hardware_name}, no "
                    f"fewer than the {dedicated:.1f} they use apart"
                )
            continue
        wakes: dict[str, float] = {}
        hit: dict[str, float] = {}
        hardware = fleets[members[0].name].config.hardware
        price = ctx.prices.usd_per_gpu_hour(hardware)
        total_use = sum(float(u.sum()) for u in usage.values())
        for item in members:
            option = fleets[item.name]
            seconds = wake_s(item, option)
            active = _active(item.load.rate_rps, step)
            starts = np.flatnonzero(np.diff(np.concatenate(([0.0], active))) > 0)
            rate = item.load.rate_rps
            affected = float(np.minimum(rate[starts] * seconds + 1.0, rate[starts] * step).sum())
            total = float(rate.sum() * step)
            wakes[item.name] = seconds
            hit[item.name] = affected / total if total > 0 else 0.0
            p = option.projection
            assert p is not None
            share = float(usage[item.name].sum()) / total_use if total_use > 0 else 0.0
            missed = hit[item.name] if seconds > item.slo.ttft_p95_s else 0.0
            projections[item.name] = replace(
                _stretched(
                    p,
                    1.0,
                    pooled * share,
                    price,
                    ctx.options.hours_per_month,
                    ctx.power(hardware),
                ),
                slo_attainment=max(p.slo_attainment - missed, 0.0),
                meets_slo=p.meets_slo and missed <= 0.05 - (1.0 - p.slo_attainment),
            )
        groups.append(
            Group(
                "rotation",
                hardware_name,
                tuple(i.name for i in members),
                dedicated,
                float(pooled),
                wake_s=wakes,
                affected_share=hit,
            )
        )
    return groups, projections


def plan_sharing(ctx: AssessmentContext, fleets: dict[str, Sized]) -> SharingPlan:
    """Co-location first, then rotation of what is left (see the module docstring)."""
    items = [ctx.resolved[name] for name in fleets if name in ctx.resolved]
    groups, projections = _colocate(ctx, items, fleets)
    taken = {name for g in groups for name in g.members}
    colocation = _colocation_declined(items, fleets, groups)
    rotation_declined: dict[str, str] = {}
    rotation, rotated = _rotate(ctx, items, fleets, taken, rotation_declined)
    shared = taken | {name for g in rotation for name in g.members}
    declined = {
        item.name: "; ".join(
            f"{kind}: {why}"
            for kind, why in (
                ("co-location", colocation.get(item.name)),
                ("rotation", rotation_declined.get(item.name)),
            )
            if why
        )
        for item in items
        if item.name not in shared
    }
    return SharingPlan((*groups, *rotation), {**projections, **rotated}, declined)


def evaluate(
    workload: WorkloadSpec,
    deployment: DeploymentSpec,
    prices: PriceBook | None,
    slo: SloSpec,
    *,
    context: AssessmentContext | None = None,
) -> StrategyResult:
    ctx, item, baseline = starting_point(workload, deployment, prices, slo, context)
    fleets = {name: rightsized(ctx, other) for name, other in ctx.resolved.items()}
    plan = plan_sharing(ctx, fleets)
    group = plan.group_of(item.name)
    own = fleets[item.name]
    assumptions = (
        *common_assumptions(ctx, item),
        f"co-located models time-slice the GPU: each one's latency stretches by 1 / (1 - the "
        f"others' busy fraction); KV reserved at {KV_MARGIN:g}x its peak need",
        f"idle models sleep after {KEEP_WARM_S:g} s without requests; wake time {WAKE_SOURCE}",
    )
    details: dict[str, object] = {"groups": [g.describe() for g in plan.groups]}
    reference = applied_to(own, baseline)
    if group is None or item.name not in plan.projections or own.projection is None:
        alone = len(ctx.resolved) < 2
        why = plan.declined.get(item.name) or "today's configuration cannot serve its load"
        return StrategyResult(
            strategy=NAME,
            deployment=item.name,
            status="not_applicable" if alone else "not_recommended",
            summary=(
                "not applicable: no other deployment to share GPUs with"
                if alone
                else f"not recommended: {why}"
            ),
            baseline=baseline,
            reference=reference,
            projected=reference,
            config_change=change(item.baseline, item.baseline),
            assumptions=assumptions,
            details=details,
        )
    projected = plan.projections[item.name]
    risks = []
    notes: list[str] = []
    engine_args: dict[str, str | int | float | bool] = {}
    env: dict[str, str] = {}
    if group.kind == "co-location":
        share = group.memory_share[item.name]
        engine_args["--gpu-memory-utilization"] = share
        partners = ", ".join(m for m in group.members if m != item.name)
        notes.append(
            f"run on one {group.hardware} with {partners} (each vLLM with its own "
            "--gpu-memory-utilization; start them one after another)"
        )
        if group.memory_headroom < 0.1:
            risks.append(
                f"OOM risk: only {group.memory_headroom:.0%} of GPU memory is left free when all "
                "members hold their peak KV"
            )
        what = (
            f"co-located with {len(group.members) - 1} other model(s) on {group.gpus_after:g} "
            f"{group.hardware} (memory headroom {group.memory_headroom:.0%}, latency x"
            f"{group.stretch[item.name]:.2f})"
        )
    else:
        engine_args["--enable-sleep-mode"] = True
        env["VLLM_SERVER_DEV_MODE"] = "1"
        notes.append("the router wakes the model (POST /wake_up) on its first request after sleep")
        what = (
            f"rotated with {len(group.members) - 1} other model(s) on a pool of "
            f"{group.gpus_after:g} {group.hardware} instead of {group.gpus_before:g} dedicated; "
            f"wake {ms(group.wake_s[item.name])} hits {group.affected_share[item.name]:.2%} of "
            "its requests"
        )
        risks.append("a burst right after a wake queues behind it")
    summary = f"{what}: {row_line(own, baseline, projected)}; fleet GPUs saved {plan.gpus_saved:g}"
    recommended = projected.meets_slo and (
        not own.meets or projected.usd_per_month < reference.usd_per_month - CENT
    )
    if not recommended:
        why = (
            miss_reason(projected, item)
            if not projected.meets_slo
            else "its share of the shared GPUs costs no less than its own"
        )
        summary = f"not recommended: {why}; {summary}"
    config_change = replace(
        change(item.baseline, own.config, replicas=own.replicas),
        engine_args=engine_args,
        env=env,
        notes=tuple(notes),
    )
    return StrategyResult(
        strategy=NAME,
        deployment=item.name,
        status="recommended" if recommended else "not_recommended",
        summary=summary,
        baseline=baseline,
        reference=reference,
        projected=projected,
        config_change=config_change,
        assumptions=assumptions,
        risks=tuple(risks),
        details=details,
    )


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
