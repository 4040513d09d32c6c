"""The plan's tables: strategy combinations for this fleet, and sensitivity to the inputs.

`combinations` answers the product brief's "strategy combination -> GPU utilization, cost
savings" with this fleet's own numbers: for every subset of the enabled strategies, each
deployment takes its cheapest candidate using only those strategies (the planner's
simulated lattice, so interactions are in), sharing is applied when in the subset, and the
fleet's GPUs, utilization, cost and savings versus today are reported. The empty subset is
right-sizing today's configurations alone. "hardware" (a move to another GPU kind) is one
more lever in the subsets when the price sheet offers a kind some deployment could use.

`sensitivity` moves one input at a time (load, GPU price, output and prompt lengths, the
calibration's bandwidth and compute efficiencies, speculative acceptance, cold-start time)
to a low and a high value, re-sizes the chosen configurations under it (new load curves where
the input changes them), and reports the plan's monthly cost and savings at both ends,
largest swing first. Sharing is kept as planned.

`prefix_reuse` answers, per deployment whose request sample carries no prompt block hashes
(reuse unknown), what its chosen configuration costs at 0%, 30% and 60% prefix reuse
(`advisor.engine.prefix_reuse`): the chosen configuration (its autoscaling policy, if any) is
re-sized on the simulation sample with synthetic block hashes, rather than the whole search
run again, so each share costs one sizing. 0% is the plan as chosen (before sharing).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from advisor.engine.advice import CombinationRow, Projection, ReusePoint, SensitivityRow
from advisor.engine.capacity import ReplicaConfig, WorkloadShape
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.hardware import HARDWARE
from advisor.engine.planner import Chosen, DeploymentSearch, choose, fleet_totals
from advisor.engine.prefix_reuse import REUSE_SHARES, with_reuse
from advisor.engine.scenario import LoadShape
from advisor.engine.specdecode import SpecConfig
from advisor.engine.strategies._common import Sized, size_fixed, with_policy
from advisor.engine.strategies.registry import names
from advisor.engine.workload import Workload


def combinations(
    ctx: AssessmentContext,
    searches: dict[str, DeploymentSearch],
    enabled: frozenset[str],
    today: Projection,
) -> tuple[CombinationRow, ...]:
    order = [n for n in names() if n in enabled]
    moves = any(HARDWARE in c.strategies for f in searches.values() for c in f.candidates)
    if HARDWARE in enabled and moves:  # a column only where the price sheet offers a move
        order.append(HARDWARE)
    rows = []
    for size in range(len(order) + 1):
        for subset in itertools.combinations(order, size):
            chosen, _ = choose(ctx, searches, frozenset(subset))
            projections = [c.projection or c.baseline for c in chosen.values()]
            totals = fleet_totals(projections, ctx.options.hours_per_month)
            saved = today.usd_per_month - totals.usd_per_month
            rows.append(
                CombinationRow(
                    strategies=subset,
                    gpus=totals.gpus,
                    utilization=totals.utilization,
                    usd_per_month=totals.usd_per_month,
                    savings_usd_per_month=saved,
                    savings_fraction=saved / today.usd_per_month if today.usd_per_month else 0.0,
                    slo_attainment=totals.slo_attainment,
                    meets_slo=all(c.chosen is not None for c in chosen.values())
                    and totals.meets_slo,
                )
            )
    return tuple(rows)


@dataclass(frozen=True)
class Perturbation:
    name: str
    low: float
    high: float
    unit: str  # "x" (factor) or "+" (added)


def _scaled_shape(
    shape: WorkloadShape, *, prompt: float = 1.0, output: float = 1.0
) -> WorkloadShape:
    base = shape.base
    workload = Workload(
        base.arrival_s,
        np.maximum(np.rint(base.prompt_tokens * prompt), 1).astype(np.int64),
        np.maximum(np.rint(base.output_tokens * output), 1).astype(np.int64),
        None,
        base.name,
    )
    return WorkloadShape(
        workload, shape.mean_output_tokens * output, shape.mean_prompt_tokens * prompt
    )


def _variant(item: Resolved, p: Perturbation, value: float) -> tuple[Resolved, float]:
    """The deployment with one input moved, and the factor on prices."""
    tag = f"{p.name}={value:g}"
    if p.name == "load (requests/s)":
        load = LoadShape(item.load.rate_rps * value, item.load.step_s, item.load.start_utc)
        return replace(item, load=load, variant=tag), 1.0
    if p.name == "GPU price":
        return item, value
    if p.name == "output tokens per request":
        return replace(item, shape=_scaled_shape(item.shape, output=value), variant=tag), 1.0
    if p.name == "prompt tokens per request":
        return replace(item, shape=_scaled_shape(item.shape, prompt=value), variant=tag), 1.0
    if p.name == "calibration: bandwidth efficiency":
        profile = replace(item.profile, bw_efficiency=min(item.profile.bw_efficiency * value, 1.0))
        return replace(item, profile=profile, variant=tag), 1.0
    if p.name == "calibration: compute efficiency":
        efficiency = min(item.profile.compute_efficiency * value, 1.0)
        return replace(
            item, profile=replace(item.profile, compute_efficiency=efficiency), variant=tag
        ), 1.0
    if p.name == "cold start time":
        scaling = item.spec.autoscaling
        from advisor.engine.strategies._common import cold_start_s

        seconds = cold_start_s(item, item.baseline) * value
        spec = replace(item.spec, autoscaling=replace(scaling, cold_start_s=seconds))
        return replace(item, spec=spec, variant=tag), 1.0
    return replace(item, variant=tag), 1.0


def _resize(
    ctx: AssessmentContext, item: Resolved, sized: Sized, p: Perturbation, value: float
) -> tuple[Projection | None, str]:
    """The chosen configuration re-sized with one input moved (and why it cannot serve)."""
    config: ReplicaConfig = sized.config
    if p.name == "speculative acceptance alpha" and config.spec is not None:
        alpha = min(max(config.spec.alpha + value, 0.0), 1.0)
        config = replace(
            config, spec=SpecConfig(config.spec.drafter, config.spec.num_speculative_tokens, alpha)
        )
    if sized.policy is not None:
        moved = with_policy(ctx, item, config, sized.policy)
    else:
        moved = size_fixed(ctx, item, config)
    return moved.projection, moved.curve.reason


def sensitivity(
    ctx: AssessmentContext, chosen: dict[str, Chosen], enabled: frozenset[str]
) -> tuple[SensitivityRow, ...]:
    picks = {n: c for n, c in chosen.items() if c.chosen is not None}
    if not picks:
        return ()
    perturbations = [
        Perturbation("load (requests/s)", 0.8, 1.25, "x"),
        Perturbation("GPU price", 0.8, 1.2, "x"),
        Perturbation("output tokens per request", 0.8, 1.25, "x"),
        Perturbation("prompt tokens per request", 0.8, 1.25, "x"),
        Perturbation("calibration: bandwidth efficiency", 0.85, 1.15, "x"),
        Perturbation("calibration: compute efficiency", 0.85, 1.15, "x"),
    ]
    if any(c.chosen is not None and c.chosen.sized.config.spec is not None for c in picks.values()):
        perturbations.append(Perturbation("speculative acceptance alpha", -0.15, 0.15, "+"))
    if any(c.chosen is not None and c.chosen.sized.policy is not None for c in picks.values()):
        perturbations.append(Perturbation("cold start time", 0.5, 2.0, "x"))
    # what sharing saves on top of the chosen fleets, kept as planned
    sharing_delta = sum(
        (c.chosen.sized.projection.usd_per_month - c.projection.usd_per_month)
        for c in picks.values()
        if c.projection is not None
        and c.chosen is not None
        and c.chosen.sized.projection is not None
    )
    rows = []
    for p in perturbations:
        ends = []
        notes: list[str] = []
        for value in (p.low, p.high):
            plan_cost = -sharing_delta * (value if p.name == "GPU price" else 1.0)
            today_cost = 0.0
            meets = True
            for pick in chosen.values():
                base_item = pick.search.item
                item, price = _variant(base_item, p, value)
                today_cost += pick.baseline.usd_per_month * price
                if pick.chosen is None:
                    plan_cost += pick.baseline.usd_per_month * price
                    continue
                projection, why = _resize(ctx, item, pick.chosen.sized, p, value)
                if projection is None:
                    plan_cost = math.inf
                    meets = False
                    notes.append(f"{_label(p, value)}: {base_item.name} cannot be served ({why})")
                    continue
                if not projection.meets_slo:
                    meets = False
                    notes.append(f"{_label(p, value)}: {base_item.name} misses its SLOs")
                plan_cost += projection.usd_per_month * price
            saving = 1.0 - plan_cost / today_cost if today_cost > 0 else 0.0
            ends.append((plan_cost, saving, meets))
        swing = abs(ends[1][0] - ends[0][0])
        rows.append(
            SensitivityRow(
                input=p.name,
                low_label=_label(p, p.low),
                high_label=_label(p, p.high),
                plan_usd_per_month_low=ends[0][0],
                plan_usd_per_month_high=ends[1][0],
                savings_fraction_low=ends[0][1],
                savings_fraction_high=ends[1][1],
                swing_usd_per_month=swing if math.isfinite(swing) else math.inf,
                meets_slo_low=ends[0][2],
                meets_slo_high=ends[1][2],
                note="; ".join(notes),
            )
        )
    rows.sort(key=lambda r: -r.swing_usd_per_month)
    return tuple(rows)


def _label(p: Perturbation, value: float) -> str:
    return f"x{value:g}" if p.unit == "x" else f"{value:+g}"


def prefix_reuse(ctx: AssessmentContext, pick: Chosen) -> tuple[ReusePoint, ...]:
    """The chosen configuration's cost at each of `REUSE_SHARES`, where reuse is unknown.

    Empty when the deployment's sample has block hashes (its reuse is measured) or nothing
    was chosen. The hashes use the deployment's KV block size (`--block-size`); with prefix
    caching off in the chosen configuration every share costs the same.
    """
    item = pick.search.item
    chosen = pick.chosen
    if chosen is None or chosen.sized.projection is None or item.shape.base.prefix is not None:
        return ()
    sized = chosen.sized
    block_tokens = item.spec.engine_args.block_size
    out = []
    for share in REUSE_SHARES:
        if share == 0.0:
            projection: Projection | None = sized.projection
        else:
            shape = item.shape
            base = with_reuse(shape.base, share, block_tokens)
            variant = replace(
                item,
                shape=WorkloadShape(base, shape.mean_output_tokens, shape.mean_prompt_tokens),
                variant=f"prefix reuse={share:g}",
            )
            if sized.policy is not None:
                projection = with_policy(ctx, variant, sized.config, sized.policy).projection
            else:
                projection = size_fixed(ctx, variant, sized.config).projection
        out.append(
            ReusePoint(
                reuse_share=share,
                usd_per_month=None if projection is None else projection.usd_per_month,
                meets_slo=projection is not None and projection.meets_slo,
            )
        )
    return tuple(out)
