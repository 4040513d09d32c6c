"""Quantization: every precision the model and GPU support, within the user's quality floor.

For each weight scheme (and an FP8 KV cache for the best ones) at the smallest tensor-parallel
size where it fits (and today's), the memory plan says what the weights take, how much KV
cache is left and whether fewer GPUs per replica suffice; the simulator says what that does
to latency and throughput on this deployment's requests; the fleet model turns it into GPUs
and cost. A scheme whose quality change (published figure, the user's own measurement, or
an estimate, each labelled) exceeds the allowed loss is listed but never chosen. A quantized
checkpoint is a different model path: the config change says so.
"""

from __future__ import annotations

from dataclasses import replace

from advisor.engine.advice import Alternative, StrategyResult
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import GIB
from advisor.engine.context import AssessmentContext, PriceBook, Resolved
from advisor.engine.perf import ConfigError, memory_plan
from advisor.engine.scenario import DeploymentSpec, SloSpec, WorkloadSpec
from advisor.engine.strategies._common import (
    STATIC_NOTE,
    Sized,
    alternative,
    applied_to,
    beats,
    change,
    cheapest,
    common_assumptions,
    no_gain,
    not_applicable,
    row_line,
    size_fixed,
    starting_point,
)
from advisor.engine.strategies._quality import quality_of

NAME = "quantization"
ORDER = 2

SCHEMES = ("bf16", "fp8", "int8", "gptq-int8", "awq-int4", "gptq-int4")
NOT_MODELLED = ("gguf-q8_0", "gguf-q4_k_m")  # vLLM's GGUF path: experimental kernels

# Published checkpoints (Hugging Face ids) for catalog models; a fine-tuned model needs its own.
CHECKPOINTS: dict[tuple[str, str], str] = {
    ("Llama-3-8B", "fp8"): "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8",
    ("Llama-3-8B", "int8"): "neuralmagic/Meta-Llama-3.1-8B-Instruct-quantized.w8a8",
    ("Llama-3-8B", "awq-int4"): "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
    ("Llama-3-8B", "gptq-int4"): "hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4",
    ("Llama-3-70B", "fp8"): "neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8",
    ("Llama-3-70B", "int8"): "neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8",
    ("Llama-3-70B", "awq-int4"): "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
    ("Llama-3-70B", "gptq-int4"): "hugging-quants/Meta-Llama-3.1-70B-Instruct-GPTQ-INT4",
    ("Qwen2.5-7B", "awq-int4"): "Qwen/Qwen2.5-7B-Instruct-AWQ",
    ("Qwen2.5-7B", "gptq-int4"): "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4",
    ("Qwen2.5-7B", "gptq-int8"): "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8",
    ("Qwen2.5-72B", "awq-int4"): "Qwen/Qwen2.5-72B-Instruct-AWQ",
    ("Qwen2.5-72B", "gptq-int4"): "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4",
    ("Qwen2.5-72B", "gptq-int8"): "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int8",
}


def schemes_for(item: Resolved) -> tuple[str, ...]:
    """Weight schemes vLLM serves for this model on this hardware (CPU: BF16 only)."""
    if item.hardware.kind == "cpu":
        return ("bf16",)
    return SCHEMES


def tp_sizes(config: ReplicaConfig, max_tp: int) -> tuple[int, ...]:
    """The smallest TP at which this precision fits, and today's TP if it differs."""
    fitting = config.fitting_tensor_parallel(max_tp)
    if not fitting:
        return ()
    chosen = {fitting[0]}
    if config.tensor_parallel in fitting:
        chosen.add(config.tensor_parallel)
    return tuple(sorted(chosen))


def model_path_for(item: Resolved, scheme: str) -> tuple[str | None, str]:
    """The checkpoint to serve for a scheme and a note saying where it comes from."""
    if scheme == item.baseline.weight_dtype:
        return None, ""
    if scheme in ("bf16", "fp16"):
        return (
            item.spec.served_path,
            "serve the unquantized checkpoint (today's path is a quantized one)",
        )
    if scheme == "fp8" and item.baseline.weight_dtype in ("bf16", "fp16"):
        return None, (
            "FP8: vLLM quantizes the BF16 checkpoint at load time with --quantization fp8 "
            "(same model path); a pre-quantized FP8 checkpoint also works"
        )
    known = CHECKPOINTS.get((item.model.name, scheme))
    if known:
        return known, (
            f"{scheme} needs a quantized checkpoint, a different model path: {known} is a "
            "published one for the base model; a fine-tuned model must be quantized itself "
            "(llm-compressor, AutoAWQ, GPTQModel)"
        )
    return f"<{scheme} checkpoint of {item.spec.served_path}>", (
        f"{scheme} needs a quantized checkpoint, a different model path: quantize "
        f"{item.spec.served_path} with llm-compressor / AutoAWQ / GPTQModel"
    )


def _memory(option: Sized) -> dict[str, object]:
    config = option.config
    try:
        plan = memory_plan(
            config.deployment(),
            max_num_batched_tokens=config.max_num_batched_tokens,
            max_num_seqs=config.max_num_seqs,
        )
    except ConfigError as exc:
        return {"fits": False, "reason": str(exc)}
    return {
        "fits": plan.fits,
        "weights_gib_per_gpu": plan.weight_bytes_per_gpu / GIB,
        "kv_capacity_tokens": plan.kv_capacity_tokens,
        "gpus_per_replica": config.tensor_parallel,
    }


def search(ctx: AssessmentContext, item: Resolved, base: ReplicaConfig) -> list[Sized]:
    """Every (scheme, TP) from `base`, then an FP8 KV cache on the two best."""
    tried: list[Sized] = []
    for scheme in schemes_for(item):
        config = replace(base, weight_dtype=scheme)
        for tp in tp_sizes(config, ctx.options.max_tensor_parallel):
            tried.append(size_fixed(ctx, item, replace(config, tensor_parallel=tp)))
    ranked = sorted((t for t in tried if t.projection is not None), key=lambda t: t.usd_per_month)[
        :2
    ]
    for option in ranked:
        if option.config.kv_cache_dtype in ("auto", "bf16", "fp16"):
            config = replace(option.config, kv_cache_dtype="fp8")
            if all(t.config != config for t in tried):
                tried.append(size_fixed(ctx, item, config))
    return tried


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
    tried = search(ctx, item, base)
    best = cheapest(tried)
    allowed = item.spec.slo.max_quality_loss_points
    alternatives: list[Alternative] = []
    table = []
    for option in tried:
        quality = quality_of(item.spec, option.config.weight_dtype, option.config.kv_cache_dtype)
        reason = ""
        if quality.loss_points > allowed + 1e-12:
            reason = f"quality loss {quality.loss_points:.1f} points > allowed {allowed:g}"
        alternatives.append(alternative(option, item, reason=reason))
        row = {
            "label": option.config.label(),
            "quality_delta_points": quality.delta_points,
            "quality_source": quality.source,
            "quality_kind": quality.kind,
            **_memory(option),
        }
        if option.projection is not None:
            row["gpus"] = option.projection.gpus
            row["usd_per_month"] = option.projection.usd_per_month
            row["meets_slo"] = option.projection.meets_slo
            row["slo_rps_per_replica"] = option.curve.slo_rps
        table.append(row)
    for scheme in NOT_MODELLED:
        quality = quality_of(item.spec, scheme, "auto")
        alternatives.append(
            Alternative(
                scheme,
                {"weight_dtype": scheme},
                None,
                False,
                "GGUF in vLLM runs on an experimental path whose kernels this engine does "
                f"not model (quality {quality.delta_points:+.1f}, {quality.kind}); not "
                "recommended",
            )
        )
    assumptions = (
        *common_assumptions(ctx, item),
        "quantized kernels reach the same bandwidth and compute efficiency as BF16 ones "
        "(the calibration profile's); W4A16 and FP8-on-A100 compute in BF16",
        f"quality floor: at most {allowed:g} points lost"
        + (" [default]" if "max_quality_loss_points" in item.spec.slo.defaulted else ""),
    )
    details: dict[str, object] = {"schemes": table}
    reference = size_fixed(ctx, item, base)
    if best is None or best.projection is None:
        return StrategyResult(
            strategy=NAME,
            deployment=item.name,
            status="infeasible",
            summary="no precision meets the SLOs within the quality floor",
            baseline=baseline,
            reference=baseline,
            projected=baseline,
            config_change=change(base, base),
            alternatives=tuple(alternatives),
            assumptions=assumptions,
            details=details,
        )
    chosen = best.config
    quality = quality_of(item.spec, chosen.weight_dtype, chosen.kv_cache_dtype)
    path, path_note = model_path_for(item, chosen.weight_dtype)
    notes = tuple(n for n in (path_note,) if n)
    risks = []
    if quality.kind == "estimate":
        risks.append(f"quality change is an estimate ({quality.source}): evaluate it first")
    elif quality.kind == "published":
        risks.append("the quality figure was published for another model: check on your evals")
    if chosen.kv_cache_dtype.startswith("fp8"):
        risks.append("FP8 KV cache: check long-context accuracy on your own prompts")
    if not beats(best, reference):
        return no_gain(
            NAME,
            item,
            base,
            reference,
            baseline,
            tuple(alternatives),
            assumptions,
            details,
            f"no precision is cheaper than {base.weight_dtype} at its right size",
        )
    bf16 = [t for t in tried if t.config.weight_dtype == base.weight_dtype and t.meets]
    fewer = ""
    if bf16 and chosen.tensor_parallel < min(t.config.tensor_parallel for t in bf16):
        fewer = (
            f"; fits on {chosen.tensor_parallel} GPU(s) per replica instead of "
            f"{min(t.config.tensor_parallel for t in bf16)}"
        )
    summary = (
        f"{chosen.label()} (quality {quality.delta_points:+.1f} points, {quality.kind}): "
        f"{row_line(reference, baseline, best.projection)}{fewer}"
    )
    return StrategyResult(
        strategy=NAME,
        deployment=item.name,
        status="recommended",
        summary=summary,
        baseline=baseline,
        reference=applied_to(reference, baseline),
        projected=best.projection,
        config_change=change(base, chosen, replicas=best.replicas, model_path=path, notes=notes),
        alternatives=tuple(alternatives),
        assumptions=assumptions,
        risks=tuple(risks),
        details=details,
    )
