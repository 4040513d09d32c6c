"""Speculative decoding: which method and draft length, up to which batch size, if at all.

For each method the deployment can use (n-gram always; EAGLE heads and draft models the user
lists, or public ones for catalog models) the acceptance alpha is measured from the
`vllm:spec_decode_*` counters when given, else a per-method prior with its source. The
step-time model gives the decode speedup at every batch size (Leviathan et al.'s expected
tokens per step over the cost of verifying k + 1 tokens per sequence plus k draft passes):
large at batch 1 where the step is bound by reading the weights, shrinking and turning into a
loss as the batch makes the step compute-bound. The draft lengths that win at this fleet's
operating batch are then simulated on its own requests and sized like any configuration.

Recommended when it makes the fleet cheaper than today's configuration right-sized (or meets
the SLOs where no size of that does); otherwise the answer says why (e.g. "at ~180
concurrent sequences per replica speculation slows decoding: 0.8x", or that it only cuts
TPOT p95 at the same cost: a latency gain, not a saving). The `--speculative-config`
carries the method, draft length and the batch-size cut-off (`disable_by_batch_size`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from advisor.engine.advice import Alternative, StrategyResult
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import CatalogError
from advisor.engine.context import AssessmentContext, PriceBook, Resolved
from advisor.engine.perf import ConfigError
from advisor.engine.scenario import DeploymentSpec, SloSpec, SpecCandidate, WorkloadSpec
from advisor.engine.specdecode import SpecConfig, draft_cost_ratio, step_speedup
from advisor.engine.strategies._common import (
    CENT,
    STATIC_NOTE,
    Sized,
    alternative,
    applied_to,
    change,
    cheapest,
    common_assumptions,
    ms,
    no_gain,
    not_applicable,
    rightsized,
    row_line,
    size_fixed,
    speculative_json,
    starting_point,
)
from advisor.engine.strategies._speculative_priors import (
    Acceptance,
    acceptance_for,
    candidates,
    drafter_for,
)

NAME = "speculative"
ORDER = 4

DRAFT_LENGTHS = (1, 2, 3, 4, 5, 6)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SIMULATED_PER_METHOD = 2  # draft lengths simulated per method (best by the step model)
LATENCY_GAIN = 0.9  # at equal cost, recommend when TPOT p95 falls below this share of today's


@dataclass(frozen=True)
class Option:
    candidate: SpecCandidate
    acceptance: Acceptance
    spec: SpecConfig
    speedup_at_operating_batch: float
    speedup_at_batch_1: float


def operating_point(option: Sized) -> tuple[int, int]:
    """Mean concurrent decoding sequences per replica and mean context at the fleet's load."""
    curve = option.curve
    projection = option.projection
    if projection is None or not curve.feasible:
        return 1, 1
    per_replica = projection.requests_per_s / max(option.replicas, 1)
    batch = max(round(curve.interp0(curve.mean_batch, per_replica)), 1)
    return batch, 1


def mean_context(item: Resolved) -> int:
    return max(round(item.shape.mean_prompt_tokens + 0.5 * item.shape.mean_output_tokens), 1)


def options_for(
    ctx: AssessmentContext, item: Resolved, config: ReplicaConfig, batch: int
) -> tuple[list[Option], list[Alternative]]:
    """Every (method, k) with its step-model speedup; unusable methods as alternatives."""
    target = config.deployment()
    context = mean_context(item)
    found: list[Option] = []
    refused: list[Alternative] = []
    for candidate in candidates(item.spec, item.model):
        try:
            drafter = drafter_for(candidate.method, item.model, candidate.model, ctx.catalog)
        except CatalogError as exc:
            refused.append(
                Alternative(candidate.method, {"method": candidate.method}, None, False, str(exc))
            )
            continue
        acceptance = acceptance_for(candidate.method, item.model, item.acceptance)
        for k in DRAFT_LENGTHS:
            spec = SpecConfig(drafter, k, acceptance.alpha)
            try:
                at_batch = step_speedup(spec, target, item.profile, batch=batch, context=context)
                at_one = step_speedup(spec, target, item.profile, batch=1, context=context)
            except ConfigError as exc:
                refused.append(
                    Alternative(
                        candidate.method, {"method": candidate.method}, None, False, str(exc)
                    )
                )
                break
            found.append(Option(candidate, acceptance, spec, at_batch, at_one))
    return found, refused


def speedup_table(
    spec: SpecConfig, config: ReplicaConfig, item: Resolved
) -> list[dict[str, float]]:
    """Step-model decode speedup of `spec` on `config` (without speculation) per batch size."""
    target = replace(config, spec=None).deployment()
    context = mean_context(item)
    return [
        {
            "batch": float(b),
            "speedup": step_speedup(spec, target, item.profile, batch=b, context=context),
        }
        for b in BATCHES
    ]


def cutoff(table: list[dict[str, float]]) -> int:
    """The largest batch size at which speculation still speeds decoding up (0: none)."""
    good = [row["batch"] for row in table if row["speedup"] > 1.0]
    if not good:
        return 0
    first_bad = next((row["batch"] for row in table if row["speedup"] <= 1.0), None)
    if first_bad is None:
        return int(good[-1])
    return int(max(b for b in good if b < first_bad))


def best_spec(
    ctx: AssessmentContext,
    item: Resolved,
    base: ReplicaConfig,
    *,
    per_method: int = SIMULATED_PER_METHOD,
    total: int | None = None,
    skip_losses: bool = False,
) -> tuple[Sized, Sized | None, list[Sized], list[Option], list[Alternative], int]:
    """Plain sizing, the best speculative sizing, what was simulated, options, refusals, batch.

    The best `per_method` draft lengths of each method by the step model's speedup at the
    operating batch are simulated (at most `total` in all); with `skip_losses`, options the
    step model already shows as a slowdown there are not simulated when the plain
    configuration meets the SLOs.
    """
    plain = size_fixed(ctx, item, replace(base, spec=None))
    batch, _ = operating_point(plain)
    options, refused = options_for(ctx, item, plain.config, batch)
    by_method: dict[str, list[Option]] = {}
    for option in options:
        by_method.setdefault(option.candidate.method, []).append(option)
    picked: list[Option] = []
    for method_options in by_method.values():
        ranked = sorted(method_options, key=lambda o: -o.speedup_at_operating_batch)
        picked.extend(ranked[:per_method])
    picked.sort(key=lambda o: -o.speedup_at_operating_batch)
    if skip_losses and plain.meets:
        picked = [o for o in picked if o.speedup_at_operating_batch > 1.0]
    simulated: list[Sized] = []
    for option in picked[:total]:
        simulated.append(size_fixed(ctx, item, replace(plain.config, spec=option.spec)))
    best = cheapest(simulated)
    return plain, best, simulated, options, refused, batch


def draft_path(option: Sized, item: Resolved) -> str | None:
    spec = option.config.spec
    if spec is None:
        return None
    for candidate in candidates(item.spec, item.model):
        if candidate.method == spec.drafter.method:
            return candidate.model
    return None


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
    if base.batching == "static":
        return not_applicable(ctx, NAME, item, baseline, STATIC_NOTE)
    plain, best, simulated, options, refused, batch = best_spec(ctx, item, base)
    alternatives = [alternative(plain, item, label="no speculative decoding")]
    alternatives += [alternative(s, item) for s in simulated]
    alternatives += refused
    top = max(options, key=lambda o: o.speedup_at_operating_batch, default=None)
    details: dict[str, object] = {
        "operating_batch": batch,
        "mean_context_tokens": mean_context(item),
        "options": [
            {
                "method": o.candidate.method,
                "draft": o.candidate.model,
                "num_speculative_tokens": o.spec.num_speculative_tokens,
                "alpha": o.acceptance.alpha,
                "acceptance_source": o.acceptance.source,
                "acceptance_kind": o.acceptance.kind,
                "tokens_per_step": o.spec.tokens_per_step,
                "speedup_at_batch_1": o.speedup_at_batch_1,
                "speedup_at_operating_batch": o.speedup_at_operating_batch,
            }
            for o in options
        ],
    }
    chosen_option = None
    if best is not None and best.config.spec is not None:
        chosen_option = next((o for o in options if o.spec == best.config.spec), None)
    shown = chosen_option or top
    table = speedup_table(shown.spec, plain.config, item) if shown is not None else []
    limit = cutoff(table)
    details["speedup_by_batch"] = table
    details["batch_cutoff"] = limit
    if shown is not None:
        details["draft_cost_ratio_at_batch_1"] = draft_cost_ratio(
            shown.spec.drafter, plain.config.deployment(), item.profile, 1, mean_context(item)
        )
    assumptions = (
        *common_assumptions(ctx, item),
        "acceptance follows Leviathan et al.'s geometric model (the same alpha at every "
        "draft position); verification of k + 1 tokens per sequence costs a prefill chunk of "
        "k + 1 tokens over its context in the step model",
        *(
            f"{o.candidate.method}: alpha {o.acceptance.alpha:.2f} ({o.acceptance.kind}: "
            f"{o.acceptance.source})"
            for o in {o.candidate.method: o for o in options}.values()
        ),
    )
    risks = (
        "the acceptance rate depends on the traffic: measure it on a canary and re-assess "
        "with the measured vllm:spec_decode_* counters",
    )
    speed_line = (
        f"{top.candidate.method} k={top.spec.num_speculative_tokens}: step-model speedup "
        f"{top.speedup_at_batch_1:.2f}x at batch 1, {top.speedup_at_operating_batch:.2f}x at "
        f"this fleet's ~{batch} concurrent sequences per replica"
        if top is not None
        else "no usable speculative method"
    )
    reference = plain if base.spec is None else rightsized(ctx, item)
    if best is None or best.projection is None or plain.projection is None:
        return no_gain(
            NAME, item, base, reference, baseline, tuple(alternatives), assumptions, details,
            f"no speculative configuration meets the SLOs ({speed_line})", risks,
        )  # fmt: skip
    against = applied_to(reference, baseline)
    if reference.meets and best.projection.usd_per_month >= against.usd_per_month - CENT:
        if top is not None and top.speedup_at_operating_batch <= 1.0:
            why = f"speculation would slow this fleet down at its operating batch ({speed_line})"
        elif best.projection.tpot_p95_s < LATENCY_GAIN * plain.projection.tpot_p95_s:
            why = (
                f"no cost gain: it cuts TPOT p95 to {ms(best.projection.tpot_p95_s)} from "
                f"{ms(plain.projection.tpot_p95_s)} at no lower cost, a latency gain only "
                f"({speed_line})"
            )
        else:
            why = f"no cost or latency gain at this load ({speed_line})"
        return no_gain(
            NAME, item, base, reference, baseline, tuple(alternatives), assumptions, details, why,
            risks,
        )  # fmt: skip
    spec = best.config.spec
    assert spec is not None
    summary = (
        f"{spec.drafter.method} with num_speculative_tokens={spec.num_speculative_tokens} "
        f"(alpha {spec.alpha:.2f}, {spec.tokens_per_step:.2f} tokens per step), off above "
        f"batch {limit}: {row_line(reference, baseline, best.projection)}"
    )
    config_change = change(base, best.config, replicas=best.replicas)
    config_change = replace(
        config_change,
        engine_args={
            **config_change.engine_args,
            "--speculative-config": speculative_config(best.config, draft_path(best, item), limit),
        },
    )
    return StrategyResult(
        strategy=NAME,
        deployment=item.name,
        status="recommended",
        summary=summary,
        baseline=baseline,
        reference=against,
        projected=best.projection,
        config_change=config_change,
        alternatives=tuple(alternatives),
        assumptions=assumptions,
        risks=risks,
        details=details,
    )


def speculative_config(config: ReplicaConfig, draft: str | None, batch_cutoff: int) -> str:
    """The `--speculative-config` JSON, switched off above `batch_cutoff` (0: never)."""
    limit = int(np.clip(batch_cutoff, 1, 1 << 20)) if batch_cutoff > 0 else None
    return speculative_json(config, draft, disable_by_batch_size=limit)
