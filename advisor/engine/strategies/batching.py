"""Batching: static versus continuous batching, and vLLM's scheduler limits tuned to the SLOs.

Compares naive static batching (wait for a batch or a timeout, pad, run to the longest
output) with vLLM's continuous batching, then searches `--max-num-batched-tokens`,
`--max-num-seqs` and chunked prefill coordinate-wise (each axis at the best of the others)
for the cheapest always-on fleet meeting the TTFT and TPOT p95 targets. Every candidate is a
load curve from the simulator on this deployment's own requests; nothing is assumed about
the gain.
"""

from __future__ import annotations

from dataclasses import replace

from advisor.engine.advice import StrategyResult
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.context import AssessmentContext, PriceBook, Resolved
from advisor.engine.scenario import DeploymentSpec, SloSpec, WorkloadSpec
from advisor.engine.strategies._common import (
    Sized,
    alternative,
    applied_to,
    beats,
    change,
    cheapest,
    common_assumptions,
    no_gain,
    rightsized,
    row_line,
    size_fixed,
    starting_point,
    usd,
)

NAME = "batching"
ORDER = 1

TOKEN_BUDGETS = (2048, 4096, 8192, 16384)
SEQ_LIMITS = (32, 64, 128, 256, 512, 1024)
STATIC_BATCH = 32
STATIC_TIMEOUT_S = 1.0


def candidates_for(base: ReplicaConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    tokens = tuple(sorted({*TOKEN_BUDGETS, base.max_num_batched_tokens}))
    seqs = tuple(sorted({*SEQ_LIMITS, base.max_num_seqs}))
    return tokens, seqs


def tune(ctx: AssessmentContext, item: Resolved, base: ReplicaConfig) -> tuple[Sized, list[Sized]]:
    """Coordinate search over the scheduler limits from `base` (continuous batching)."""
    start = replace(base, batching="continuous")
    tried: list[Sized] = [size_fixed(ctx, item, start)]
    tokens_grid, seqs_grid = candidates_for(start)
    best = tried[0]

    def consider(config: ReplicaConfig) -> None:
        nonlocal best
        if config.max_num_batched_tokens < config.max_num_seqs:
            return
        if any(t.config == config for t in tried):
            return
        option = size_fixed(ctx, item, config)
        tried.append(option)
        if cheapest([best, option]) is option:
            best = option

    for tokens in tokens_grid:
        consider(replace(best.config, max_num_batched_tokens=tokens))
    for seqs in seqs_grid:
        consider(replace(best.config, max_num_seqs=seqs))
    max_len = best.config.max_model_len or best.config.model.max_position_embeddings
    toggled = replace(best.config, enable_chunked_prefill=not best.config.enable_chunked_prefill)
    if toggled.enable_chunked_prefill or toggled.max_num_batched_tokens >= max_len:
        consider(toggled)
    return best, tried


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
    static_config = replace(
        base,
        batching="static",
        static_batch_size=base.static_batch_size if base.batching == "static" else STATIC_BATCH,
        static_timeout_s=base.static_timeout_s if base.batching == "static" else STATIC_TIMEOUT_S,
        spec=None,
    )
    static = size_fixed(ctx, item, static_config)
    best, tried = tune(ctx, item, base)
    same = rightsized(ctx, item)
    alternatives = [alternative(static, item, label=f"static batching: {static_config.label()}")]
    alternatives += [alternative(t, item) for t in tried]
    details: dict[str, object] = {
        "static": _figures(static),
        "continuous_current_limits": _figures(tried[0]),
        "continuous_tuned": _figures(best),
    }
    assumptions = (
        *common_assumptions(ctx, item),
        f"static batching: batches of {static_config.static_batch_size} or a "
        f"{static_config.static_timeout_s:g} s timeout, padded, run to the longest output",
    )
    risks = [
        "larger max_num_seqs raises peak memory for logits and sampling (vLLM profiles it at "
        "start: check the KV cache size it logs)",
    ]
    if best.projection is not None and best.curve.kv_usage.max() > 0.9:
        risks.append("KV cache near full at the busiest rates: expect preemptions (recompute)")
    if best.projection is None or not best.meets:
        return StrategyResult(
            strategy=NAME,
            deployment=item.name,
            status="infeasible",
            summary="no scheduler setting meets the SLOs; closest: "
            + (alternative(best, item).reason or best.curve.reason),
            baseline=baseline,
            reference=applied_to(same, baseline),
            projected=best.projection or baseline,
            config_change=change(base, base),
            alternatives=tuple(alternatives),
            assumptions=assumptions,
            risks=tuple(risks),
            details=details,
        )
    projected = best.projection
    if not beats(best, same):
        return no_gain(
            NAME,
            item,
            base,
            same,
            baseline,
            tuple(alternatives),
            assumptions,
            details,
            "today's scheduler limits are already as cheap as any tried",
            tuple(risks),
        )
    static_line = (
        f"static batching would need {static.projection.gpus:.1f} GPUs "
        f"({usd(static.projection.usd_per_month)}/month)"
        if static.projection is not None and static.meets
        else "static batching cannot meet the SLOs here"
    )
    chunked = "" if best.config.enable_chunked_prefill else ", no chunked prefill"
    summary = (
        f"continuous batching, max_num_seqs={best.config.max_num_seqs}, max_num_batched_tokens="
        f"{best.config.max_num_batched_tokens}{chunked}: "
        f"{row_line(same, baseline, projected)}; {static_line}"
    )
    return StrategyResult(
        strategy=NAME,
        deployment=item.name,
        status="recommended",
        summary=summary,
        baseline=baseline,
        reference=applied_to(same, baseline),
        projected=projected,
        config_change=change(base, best.config, replicas=best.replicas),
        alternatives=tuple(alternatives),
        assumptions=assumptions,
        risks=tuple(risks),
        details=details,
    )


def _figures(option: Sized) -> dict[str, object]:
    p = option.projection
    curve = option.curve
    out: dict[str, object] = {"label": option.config.label(), "feasible": curve.feasible}
    if curve.feasible:
        out["saturation_rps_per_replica"] = curve.saturation_rps
        out["slo_rps_per_replica"] = curve.slo_rps
        out["kv_capacity_tokens"] = curve.kv_capacity_tokens
    if p is not None:
        out["replicas"] = option.replicas
        out["gpus"] = p.gpus
        out["usd_per_month"] = p.usd_per_month
        out["ttft_p95_s"] = p.ttft_p95_s
        out["tpot_p95_s"] = p.tpot_p95_s
        out["meets_slo"] = p.meets_slo
    return out
