"""The planner: strategies combined with their interactions, the cheapest plan meeting the SLOs.

`assess(scenario) -> Plan` runs every enabled strategy on every deployment (each against
today's configuration, so its own effect shows), then searches combinations per deployment
on a lattice built from the strategies' best moves:

    precision (today's, the quantization strategy's two best)
      x scheduler (today's limits, limits re-tuned for that precision)
      x speculative decoding (today's / none, the best method and draft length for that
        precision and scheduler, simulated at the batch sizes they produce)
      x provisioning (fewest always-on replicas, or an HPA policy on that configuration's
        own per-replica load curve)

and, as one more lever ("hardware"), the other GPU kinds the price sheet offers and the user
allows (`advisor.engine.hardware`: a deployment's pinned or excluded kinds, the lever off;
with today's kind excluded, no candidate on it can be chosen): each precision above at the
tensor-parallel sizes that fit there, cheapest cost bound first, simulated only when its
bound undercuts the best configuration found with the same or fewer levers (autoscaling then
works on those too).
It then picks per deployment within each kind's count limit (`max_gpus`) and applies
multi-model sharing across the fleet to the chosen fleets. The interactions are not added
up, they are simulated: a precision that frees KV memory changes the batch sizes the
scheduler reaches, which changes what speculation gains there; autoscaling works on the new
per-replica capacity; sharing packs the new memory footprints and busy fractions.

Per deployment the answer is the cheapest configuration meeting TTFT p95, TPOT p95 and the
quality floor, keeping at least the redundancy rule's replicas (`advisor.engine.redundancy`;
`DeploymentPlan.constraints` says what it respected and whether the rule bound it), with its
Pareto set; when none does, "no configuration meets TTFT p95 <= 50 ms;
closest: ..." instead. A deployment the catalog cannot resolve is reported, not raised.
`advisor.engine.plan_tables` adds the combination table and the sensitivity analysis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from advisor.engine import hardware
from advisor.engine.advice import (
    ENGINE_VERSION,
    Alternative,
    ConfigChange,
    DeploymentPlan,
    Plan,
    Projection,
    StrategyResult,
)
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import HardwareSpec
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.hardware import HARDWARE
from advisor.engine.jsonable import JsonValue
from advisor.engine.redundancy import replica_floor
from advisor.engine.replay import replay
from advisor.engine.scenario import HPA_METRICS, DeploymentSpec, Scenario
from advisor.engine.strategies import autoscaling, batching, quantization, speculative
from advisor.engine.strategies._common import (
    Sized,
    alternative,
    baseline_projection,
    change,
    cheapest,
    closest,
    ms,
    size_fixed,
    today,
    usd,
)
from advisor.engine.strategies._speculative_priors import candidates as spec_candidates
from advisor.engine.strategies.registry import get
from advisor.engine.strategies.sharing import SharingPlan, plan_sharing

PER_DEPLOYMENT = ("batching", "quantization", "autoscaling", "speculative")
AUTOSCALED = 3  # the cheapest fixed candidates that also get an autoscaling policy
# Costs within this share of the cheapest are a tie, settled by changing fewer things: a
# percent a month does not pay for a new checkpoint or another moving part.
TIE = 0.01


@dataclass(frozen=True, eq=False)
class Candidate:
    """A configuration with its fleet and the strategies it uses relative to today."""

    sized: Sized
    strategies: frozenset[str]

    @property
    def meets(self) -> bool:
        return self.sized.meets


@dataclass(eq=False)
class DeploymentSearch:
    item: Resolved
    today: Sized
    candidates: list[Candidate] = field(default_factory=list)
    pruned: int = 0  # hardware moves whose cost bound ruled them out unsimulated
    # the user excluded today's GPU kind (`GpuKindChoice.exclude`): its candidates stay in
    # the search (the Pareto set, the closest miss) but none can be chosen
    today_excluded: bool = False
    lever_on: bool = True  # `Options.hardware_moves`

    def allowed_kind(self, candidate: Candidate) -> bool:
        return not (self.today_excluded and candidate.sized.config.hardware == self.item.hardware)

    def best(
        self, allowed: frozenset[str], fits: Callable[[Candidate], bool] | None = None
    ) -> Candidate | None:
        """The cheapest candidate meeting the SLOs; within `TIE` of it, the one changing least.

        `fits`: which candidates the fleet has room for (the GPU kinds' count limits).
        """
        usable = [
            c
            for c in self.candidates
            if c.strategies <= allowed
            and c.meets
            and self.allowed_kind(c)
            and (fits is None or fits(c))
        ]
        if not usable:
            return None
        lowest = min(c.sized.usd_per_month for c in usable)
        tied = [c for c in usable if c.sized.usd_per_month <= lowest * (1.0 + TIE) + 0.005]
        fewest = min(len(c.strategies) for c in tied)
        chosen = cheapest([c.sized for c in tied if len(c.strategies) == fewest])
        return next((c for c in tied if c.sized is chosen), None)

    def nearest(self, allowed: frozenset[str]) -> Candidate | None:
        usable = [c for c in self.candidates if c.strategies <= allowed and self.allowed_kind(c)]
        chosen = closest([c.sized for c in usable])
        return next((c for c in usable if c.sized is chosen), None)


def strategies_of(base: ReplicaConfig, config: ReplicaConfig, autoscaled: bool) -> frozenset[str]:
    """Which strategies turn today's configuration into this one (on another GPU kind, its
    tensor-parallel size belongs to the move)."""
    used = set()
    moved = config.hardware != base.hardware
    if moved:
        used.add(HARDWARE)
    if (config.weight_dtype, config.kv_cache_dtype) != (base.weight_dtype, base.kv_cache_dtype) or (
        not moved and config.tensor_parallel != base.tensor_parallel
    ):
        used.add("quantization")
    if (
        config.batching,
        config.max_num_seqs,
        config.max_num_batched_tokens,
        config.enable_chunked_prefill,
    ) != (
        base.batching,
        base.max_num_seqs,
        base.max_num_batched_tokens,
        base.enable_chunked_prefill,
    ):
        used.add("batching")
    if config.spec != base.spec:
        used.add("speculative")
    if autoscaled:
        used.add("autoscaling")
    return frozenset(used)


def _precisions(
    ctx: AssessmentContext, item: Resolved, enabled: frozenset[str], base: ReplicaConfig
) -> list[ReplicaConfig]:
    """`base` and the two cheapest other precisions (weights, KV, TP) meeting the SLOs."""
    out = [base]
    if "quantization" in enabled and base.batching == "continuous":
        tried = quantization.search(ctx, item, base)
        good = sorted((t for t in tried if t.meets), key=lambda t: t.usd_per_month)
        for option in good:
            if option.config not in out and len(out) < 3:
                out.append(option.config)
    return out


def search(ctx: AssessmentContext, item: Resolved, enabled: frozenset[str]) -> DeploymentSearch:
    """The lattice of combinations for one deployment (module docstring)."""
    base = item.baseline
    found = DeploymentSearch(
        item,
        today(ctx, item),
        today_excluded=not hardware.today_allowed(ctx, item),
        lever_on=ctx.options.hardware_moves,
    )
    fixed: dict[ReplicaConfig, Sized] = {}

    def add(config: ReplicaConfig) -> Sized:
        if config not in fixed:
            fixed[config] = size_fixed(ctx, item, config)
            found.candidates.append(Candidate(fixed[config], strategies_of(base, config, False)))
        return fixed[config]

    limits = None
    if "batching" in enabled:
        tuned, _ = batching.tune(ctx, item, base)
        limits = tuned.config
    # a static-batching server is not vLLM: precisions are tried on the continuous limits
    origin = base if base.batching == "continuous" or limits is None else limits
    precisions = [base, *_precisions(ctx, item, enabled, origin)[1:]]
    for precision in precisions:
        schedulers = [add(precision)]
        if limits is not None and limits.max_num_batched_tokens >= limits.max_num_seqs:
            retuned = replace(
                precision,
                batching="continuous",
                max_num_seqs=limits.max_num_seqs,
                max_num_batched_tokens=limits.max_num_batched_tokens,
                enable_chunked_prefill=limits.enable_chunked_prefill,
            )
            schedulers.append(add(retuned))
        if "speculative" in enabled:
            targets = [cheapest(schedulers) or schedulers[0]]
            if precision is base and targets[0].config is not base:
                targets.append(fixed[base])  # speculation alone, for the combination table
            for target in targets:
                if target.config.batching != "continuous":
                    continue
                plain, best, _, _, _, _ = speculative.best_spec(
                    ctx, item, target.config, per_method=1, total=2, skip_losses=True
                )
                add(plain.config)
                if best is not None:
                    add(best.config)
    for move in hardware.moves(ctx, item, [origin, *precisions[1:]]):
        used = strategies_of(base, move.config, False)
        bound = min(
            (
                c.sized.usd_per_month
                for c in found.candidates
                if c.meets and c.strategies <= used and found.allowed_kind(c)
            ),
            default=math.inf,
        )
        # a move must undercut what fewer levers reach by more than a tie to be chosen
        if move.bound_usd_per_month * (1.0 + TIE) >= bound:
            found.pruned += 1
            continue
        fixed[move.config] = size_fixed(ctx, item, move.config, max_replicas=move.max_replicas)
        found.candidates.append(Candidate(fixed[move.config], used))
    if "autoscaling" in enabled:
        ranked = sorted(
            (c for c in found.candidates if c.meets), key=lambda c: c.sized.usd_per_month
        )
        configs = [base] + [c.sized.config for c in ranked[:AUTOSCALED] if c.sized.config != base]
        metrics: tuple[str, ...] = (
            HPA_METRICS  # every metric on today's configuration, then the winner's
        )
        for config in configs:
            _, policy, _ = autoscaling.best_policy(ctx, item, config, metrics)
            if config is base and policy is not None and policy.policy is not None:
                metrics = (policy.policy.metric,)
            if policy is not None and policy.usd_per_month < fixed[config].usd_per_month:
                found.candidates.append(Candidate(policy, strategies_of(base, config, True)))
    return found


def _no_config_message(item: Resolved, near: Candidate | None, found: DeploymentSearch) -> str:
    slo = item.spec.slo
    if found.today_excluded and near is None:
        lever = "" if found.lever_on else " (the hardware lever is off)"
        return (
            f"no configuration is allowed for {item.name}: its gpu_kinds exclude today's "
            f"{item.hardware.name}, and no other kind the price sheet offers and gpu_kinds "
            f"allows serves it{lever}"
        )
    if near is None or near.sized.projection is None:
        reasons = sorted({c.sized.curve.reason for c in found.candidates if c.sized.curve.reason})
        return f"no configuration can serve {item.name}: " + ("; ".join(reasons) or "nothing fits")
    p = near.sized.projection
    failed = []
    if p.ttft_p95_s > slo.ttft_p95_s:
        failed.append(f"TTFT p95 <= {ms(slo.ttft_p95_s)}")
    if p.tpot_p95_s > slo.tpot_p95_s:
        failed.append(f"TPOT p95 <= {ms(slo.tpot_p95_s)}")
    if -p.quality_delta_points > slo.max_quality_loss_points + 1e-12:
        failed.append(f"quality loss <= {slo.max_quality_loss_points:g} points")
    target = " and ".join(failed) or "the SLOs"
    return (
        f"no configuration meets {target}; closest: {near.sized.config.label()}, "
        f"{near.sized.replicas} replica(s): TTFT p95 {ms(p.ttft_p95_s)}, TPOT p95 "
        f"{ms(p.tpot_p95_s)}, {usd(p.usd_per_month)}/month"
    )


def pareto(found: DeploymentSearch) -> tuple[Alternative, ...]:
    """Non-dominated candidates on (USD/month, TTFT p95, TPOT p95, quality loss)."""
    runnable = [c for c in found.candidates if c.sized.projection is not None]

    def costs(c: Candidate) -> tuple[float, float, float, float]:
        p = c.sized.projection
        assert p is not None
        return (p.usd_per_month, p.ttft_p95_s, p.tpot_p95_s, -p.quality_delta_points)

    front = []
    for c in runnable:
        mine = costs(c)
        dominated = any(
            all(o <= m for o, m in zip(costs(other), mine, strict=True)) and costs(other) != mine
            for other in runnable
        )
        if not dominated:
            front.append(c)
    front.sort(key=lambda c: costs(c))
    return tuple(alternative(c.sized, found.item, label=_label(c)) for c in front)


def _label(candidate: Candidate, strategies: set[str] | None = None) -> str:
    used = ", ".join(sorted(strategies or candidate.strategies)) or "right-sized"
    config = candidate.sized.config
    kind = f"{config.hardware.name} " if HARDWARE in candidate.strategies else ""
    label = f"[{used}] {kind}{config.label()}, {candidate.sized.replicas} replica(s)"
    if candidate.sized.policy is not None:
        policy = candidate.sized.policy
        label += f", HPA on {policy.metric} at {policy.target:.3g}"
    return label


def config_change(item: Resolved, chosen: Candidate) -> ConfigChange:
    """The whole change for the chosen combination (args, model path, replicas, manifests)."""
    base = item.baseline
    sized = chosen.sized
    path, note = quantization.model_path_for(item, sized.config.weight_dtype)
    notes = (note,) if note else ()
    result = change(base, sized.config, replicas=sized.replicas, model_path=path, notes=notes)
    if sized.config.spec is not None and sized.config.spec != base.spec:
        draft = next(
            (
                c.model
                for c in spec_candidates(item.spec, item.model)
                if c.method == sized.config.spec.drafter.method
            ),
            None,
        )
        table = speculative.speedup_table(sized.config.spec, sized.config, item)
        result = replace(
            result,
            engine_args={
                **result.engine_args,
                "--speculative-config": speculative.speculative_config(
                    sized.config, draft, speculative.cutoff(table)
                ),
            },
        )
    name = item.spec.name
    if sized.policy is not None:
        from advisor.engine.autoscale import hpa_manifest, keda_manifest

        result = replace(
            result,
            replicas=None,
            manifests={
                f"{name}-hpa.yaml": hpa_manifest(sized.policy, deployment=name),
                f"{name}-keda.yaml": keda_manifest(
                    sized.policy, deployment=name, model_name=item.spec.served_path
                ),
            },
        )
    if sized.config.hardware != base.hardware and sized.projection is not None:
        kind = sized.config.hardware.name
        replicas = sized.replicas if sized.policy is None else max(sized.policy.min_replicas, 1)
        peak = round(sized.projection.gpus_peak)
        result = replace(
            result,
            hardware=kind,
            manifests={
                **result.manifests,
                f"{name}-{kind.lower()}-nodes.yaml": hardware.node_manifest(
                    sized.config, deployment=name, replicas=replicas
                ),
            },
            notes=(*result.notes, hardware.nodes_note(sized.config, peak, base.hardware)),
        )
    return result


def constraints(
    ctx: AssessmentContext | None, spec: DeploymentSpec, chosen: Candidate | None = None
) -> dict[str, JsonValue]:
    """What the plan respects for a deployment, and whether the redundancy rule bound it.

    `binding`: the rule kept more replicas (or a higher autoscaling minimum) than the load
    alone needs; `replicas_for_load` is that need for a fixed fleet (sized again without it).
    """
    slo = spec.slo
    rule = replica_floor(spec)
    out: dict[str, JsonValue] = {
        "ttft_p95_s": slo.ttft_p95_s,
        "tpot_p95_s": slo.tpot_p95_s,
        "max_quality_loss_points": slo.max_quality_loss_points,
        "slo_defaulted": list(slo.defaulted),
        "min_replicas": rule.replicas,
        "min_replicas_defaulted": rule.defaulted,
        "min_replicas_text": rule.text,
        "binding": False,
        "replicas_for_load": None,
    }
    if ctx is None or chosen is None or rule.replicas <= 1:
        return out
    sized = chosen.sized
    if sized.policy is not None:
        out["binding"] = sized.policy.min_replicas == rule.replicas > spec.autoscaling.min_replicas
        return out
    if sized.replicas == rule.replicas:
        alone = size_fixed(ctx, ctx.resolved[spec.name], sized.config, redundancy=False)
        if alone.meets and alone.replicas < sized.replicas:
            out["binding"] = True
            out["replicas_for_load"] = alone.replicas
    return out


def _rule_note(rules: dict[str, JsonValue]) -> str:
    if not rules.get("binding"):
        return ""
    need = rules.get("replicas_for_load")
    alone = f"; the load alone needs {need}" if need is not None else ""
    return f"; redundancy rule: {rules['min_replicas_text']}{alone}"


def fleet_totals(projections: list[Projection], hours_per_month: float) -> Projection:
    """The fleet as one projection: sums, load-weighted means, the worst deployment's p95s."""
    if not projections:
        nan = float("nan")
        return Projection(0.0, 0.0, nan, nan, nan, nan, nan, nan, nan, 0.0, 0.0, nan, nan, 0.0, 0.0)
    gpus = sum(p.gpus for p in projections)
    usd_hour = sum(p.usd_per_hour for p in projections)
    requests = sum(p.requests_per_s for p in projections)
    tokens = sum(p.output_tokens_per_s for p in projections)
    # energy over the deployments whose power is known, idle ones included: per token it is
    # their mean board power over the tokens they serve
    known = [p for p in projections if math.isfinite(p.energy_kwh_per_month)]
    known_tokens = sum(p.output_tokens_per_s for p in known)
    kwh = sum(p.energy_kwh_per_month for p in known)
    watts = kwh * 1000.0 / hours_per_month if hours_per_month > 0 else math.nan

    def weighted(values: list[float], weights: list[float]) -> float:
        pairs = [(v, w) for v, w in zip(values, weights, strict=True) if math.isfinite(v) and w > 0]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total > 0 else math.nan

    def by_gpus(values: list[float]) -> float:
        return weighted(values, [p.gpus for p in projections])

    def by_requests(values: list[float]) -> float:
        return weighted(values, [p.requests_per_s for p in projections])

    return Projection(
        gpus=gpus,
        gpus_peak=sum(p.gpus_peak for p in projections),
        utilization=by_gpus([p.utilization for p in projections]),
        busy_fraction=by_gpus([p.busy_fraction for p in projections]),
        ttft_p50_s=by_requests([p.ttft_p50_s for p in projections]),
        ttft_p95_s=max((p.ttft_p95_s for p in projections), key=_nan_last),
        tpot_p50_s=by_requests([p.tpot_p50_s for p in projections]),
        tpot_p95_s=max((p.tpot_p95_s for p in projections), key=_nan_last),
        slo_attainment=by_requests([p.slo_attainment for p in projections]),
        usd_per_hour=usd_hour,
        usd_per_month=usd_hour * hours_per_month,
        usd_per_1m_output_tokens=usd_hour / (tokens * 3600.0) * 1e6 if tokens > 0 else float("inf"),
        energy_j_per_output_token=watts / known_tokens if known_tokens > 0 else math.nan,
        requests_per_s=requests,
        output_tokens_per_s=tokens,
        quality_delta_points=min(p.quality_delta_points for p in projections),
        meets_slo=all(p.meets_slo for p in projections),
        energy_kwh_per_month=kwh if known else math.nan,
    )


def _nan_last(value: float) -> float:
    return value if not math.isnan(value) else -math.inf


@dataclass(eq=False)
class Chosen:
    """Per deployment: today's projection, the chosen candidate (or None), the search."""

    search: DeploymentSearch
    baseline: Projection
    chosen: Candidate | None
    projection: Projection | None


def _on_kind(kind: HardwareSpec, candidate: Candidate) -> bool:
    return candidate.sized.config.hardware == kind


def choose(
    ctx: AssessmentContext, searches: dict[str, DeploymentSearch], allowed: frozenset[str]
) -> tuple[dict[str, Chosen], SharingPlan | None]:
    """The cheapest candidate per deployment using only `allowed` strategies, then sharing.

    A GPU kind with a count limit (`max_gpus`) is spent deployment by deployment, the one
    saving most first: each takes its cheapest candidate whose peak GPUs still fit; one that
    fits nowhere keeps its cheapest candidate on today's kind (it holds those GPUs now).
    """
    out: dict[str, Chosen] = {}
    left: dict[str, float] = dict(hardware.gpu_limits(ctx))

    def saving(name: str) -> float:
        found = searches[name]
        best = found.best(allowed)
        return found.today.usd_per_month - best.sized.usd_per_month if best else -math.inf

    def fits(candidate: Candidate) -> bool:
        kind = candidate.sized.config.hardware.name
        projection = candidate.sized.projection
        return kind not in left or projection is None or projection.gpus_peak <= left[kind] + 1e-9

    order = sorted(searches, key=lambda n: (-saving(n), n)) if left else list(searches)
    for name in order:
        found = searches[name]
        best = found.best(allowed, fits if left else None)
        if best is None and left:
            best = found.best(allowed, partial(_on_kind, found.item.hardware))
        if best is not None and best.sized.projection is not None:
            kind = best.sized.config.hardware.name
            if kind in left:
                left[kind] -= best.sized.projection.gpus_peak
        base = baseline_projection(ctx, found.item, found.today)
        pick = best or found.nearest(allowed)
        projection = pick.sized.projection if pick is not None else None
        out[name] = Chosen(found, base, best, projection)
    out = {name: out[name] for name in searches}
    sharing = None
    if "sharing" in allowed and len(out) > 1:
        fleets = {n: c.chosen.sized for n, c in out.items() if c.chosen is not None}
        sharing = plan_sharing(ctx, fleets)
        for group in sharing.groups:
            held = {n: out[n].projection for n in group.members}
            members = [n for n, p in held.items() if p is not None]
            before = sum(p.usd_per_month for p in held.values() if p is not None)
            after = sum(sharing.projections[n].usd_per_month for n in members)
            fine = all(sharing.projections[n].meets_slo for n in members)
            if fine and after < before - 0.005:
                for name in members:
                    out[name].projection = sharing.projections[name]
    return out, sharing


def assess(scenario: Scenario) -> Plan:
    """The plan for a scenario (module docstring). Deterministic for a given scenario."""
    from advisor.engine.plan_tables import combinations, prefix_reuse, sensitivity

    ctx = AssessmentContext(scenario)
    enabled = frozenset(scenario.options.strategy_names) | {HARDWARE}
    results: list[StrategyResult] = []
    for item in ctx.resolved.values():
        for name in scenario.options.strategy_names:
            module = get(name)
            spec = item.spec
            results.append(module.evaluate(spec.workload, spec, ctx.prices, spec.slo, context=ctx))
    searches = {
        name: search(ctx, item, enabled & frozenset(PER_DEPLOYMENT))
        for name, item in ctx.resolved.items()
    }
    chosen, sharing = choose(ctx, searches, enabled)
    plans: list[DeploymentPlan] = []
    messages: list[str] = []
    for deployment in scenario.deployments:
        name = deployment.name
        if name in ctx.problems:
            messages.append(f"{name}: {ctx.problems[name]}")
            plans.append(
                DeploymentPlan(
                    name,
                    "error",
                    ctx.problems[name],
                    None,
                    None,
                    (),
                    {},
                    ConfigChange(),
                    constraints=constraints(None, deployment),
                )
            )
            continue
        pick = chosen[name]
        item = pick.search.item
        front = pareto(pick.search)
        if pick.chosen is None:
            near = pick.search.nearest(enabled)
            message = _no_config_message(item, near, pick.search)
            messages.append(f"{name}: {message}")
            plans.append(
                DeploymentPlan(
                    name,
                    "no_feasible_configuration",
                    message,
                    pick.baseline,
                    near.sized.projection if near is not None else None,
                    (),
                    {},
                    ConfigChange(),
                    closest=alternative(near.sized, item, label=_label(near)) if near else None,
                    pareto=front,
                    replay=replay(ctx, item),
                    constraints=constraints(None, deployment),
                )
            )
            continue
        used = set(pick.chosen.strategies)
        group = sharing.group_of(name) if sharing is not None else None
        if group is not None and pick.projection is not pick.chosen.sized.projection:
            used.add("sharing")
        projection = pick.projection or pick.baseline
        described = pick.chosen.sized.config.describe()
        if pick.chosen.sized.config.hardware != item.hardware:
            described["hardware"] = pick.chosen.sized.config.hardware.name
        described["replicas"] = pick.chosen.sized.replicas
        if pick.chosen.sized.policy is not None:
            described["autoscaling"] = pick.chosen.sized.policy.describe()
        if "sharing" in used and group is not None:
            described["sharing"] = group.describe()
        rules = constraints(ctx, deployment, pick.chosen)
        move = ""
        if pick.chosen.sized.config.hardware != item.hardware and pick.projection is not None:
            move = hardware.move_line(
                name, item.baseline, pick.baseline.gpus_peak, pick.chosen.sized.config,
                pick.baseline, pick.projection,
            )  # fmt: skip
        plans.append(
            DeploymentPlan(
                name,
                "ok",
                f"{_label(pick.chosen, used)}: {usd(projection.usd_per_month)}/month vs "
                f"{usd(pick.baseline.usd_per_month)} today{_rule_note(rules)}",
                pick.baseline,
                projection,
                tuple(sorted(used)),
                described,
                config_change(item, pick.chosen),
                pareto=front,
                replay=replay(ctx, item),
                constraints=rules,
                move=move,
                prefix_reuse=prefix_reuse(ctx, pick),
            )
        )
    hours = scenario.options.hours_per_month
    assessed = [p for p in plans if p.baseline is not None]
    fleet_baseline = fleet_totals([p.baseline for p in assessed if p.baseline], hours)
    fleet_plan = fleet_totals(
        [
            p.plan if p.plan is not None and p.status == "ok" else p.baseline
            for p in assessed
            if p.baseline
        ],
        hours,
    )
    saved = fleet_baseline.usd_per_month - fleet_plan.usd_per_month
    moved_to = sorted({str(p.config["hardware"]) for p in plans if "hardware" in p.config})
    assumptions = _assumptions(ctx, moved_to)
    return Plan(
        scenario=scenario.name,
        scenario_digest=scenario.digest(),
        engine_version=ENGINE_VERSION,
        deployments=tuple(plans),
        fleet_baseline=fleet_baseline,
        fleet_plan=fleet_plan,
        savings_usd_per_month=saved,
        savings_fraction=saved / fleet_baseline.usd_per_month
        if fleet_baseline.usd_per_month
        else 0.0,
        strategy_results=tuple(results),
        combinations=combinations(ctx, searches, enabled, fleet_baseline),
        sensitivity=sensitivity(ctx, chosen, enabled),
        sharing={"groups": [g.describe() for g in sharing.groups]} if sharing else {},
        assumptions=assumptions,
        messages=tuple(messages),
    )


def _assumptions(ctx: AssessmentContext, moved_to: list[str]) -> tuple[str, ...]:
    out = [
        "fleet latency figures are the worst deployment's p95 and load-weighted p50s; "
        "utilization is served load over what the provisioned replicas could serve at saturation",
        f"{ctx.options.hours_per_month:g} hours per month; energy from board power linear in "
        "the busy fraction between idle and full (see advisor.engine.energy)",
    ]
    offered = {n: e for n, e in ctx.prices.as_dict().items() if not e.defaulted}
    if len(offered) > 1 and not ctx.options.hardware_moves:
        out.append("moves to other GPU kinds: off (every deployment keeps its kind)")
    elif len(offered) > 1:
        kinds = ", ".join(
            name + (f" (at most {e.max_gpus} GPUs)" if e.max_gpus is not None else "")
            for name, e in sorted(offered.items())
        )
        out.append(
            f"GPU kinds a deployment may move to: those the price sheet lists ({kinds}); a "
            "move is priced on-demand (reserved and spot prices are shown, not used)"
        )
    for deployment in ctx.scenario.deployments:
        choice = deployment.gpu_kinds
        if ctx.options.hardware_moves and choice.restricted:
            said = [f"only to {', '.join(choice.pin)}"] if choice.pin else []
            said += [f"never to {', '.join(choice.exclude)}"] if choice.exclude else []
            out.append(f"{deployment.name}: moves to other GPU kinds {'; '.join(said)}")
    for kind in moved_to:
        profile = ctx.profiles.lookup(kind, ctx.options.engine)
        out.append(
            f"deployments moved to {kind}: step times from the calibration profile for "
            f"({profile.hardware}, {profile.engine}): {profile.source}"
        )
    for key in ctx.prices.unknown:
        out.append(f"prices/power entry {key!r} names no known hardware: ignored")
    for name, error in ctx.model_errors.items():
        out.append(f"models.{name}: {error}")
    return tuple(out)
