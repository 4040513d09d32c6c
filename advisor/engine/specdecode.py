"""Speculative decoding: Leviathan et al.'s expectations and a simulated replica that speculates.

Per verification step a sequence proposes k draft tokens and the target scores k + 1 tokens;
with a per-token acceptance rate alpha (the geometric model of Leviathan et al., ICML 2023)
the step yields E = (1 - alpha^(k+1)) / (1 - alpha) tokens on average.

`spec_replica(replica, workload, spec, rng)` runs the engine's continuous-batching simulator
on a transformed problem in which one simulated "decode token" is one verification step:

- outputs: O -> 1 + (O - 1) / E verification steps (randomised rounding, seeded);
- the target's linear layers see k + 1 tokens per decoding sequence: the per-token compute
  and all-reduce coefficients are multiplied by k + 1, and prompts are divided by k + 1
  (with the prefill attention coefficients scaled back: pairs by (k+1)^2, context by k + 1),
  so prefill costs what it costs without speculation; the token budget becomes
  max_num_batched_tokens / (k + 1) units, as each decoding sequence takes k + 1 of it;
- decode attention reads each sequence's real context once for its k + 1 queries: the
  coefficient is max(KV read, (k+1) x attention FLOPs) per context token, scaled by the ratio
  of real to simulated context (real context grows E tokens per step);
- the drafter's k passes per step: a fixed device time (its weights, per pass) and a time per
  decoding sequence (its matmul FLOPs per token), both from its own step model; the sum of
  the memory and compute terms is an upper bound of the drafter's roofline (conservative);
- KV capacity is scaled by simulated / real tokens held, so preemption starts at the same
  real occupancy.

Everything else (scheduler, queues, preemption, chunked prefill) is the engine's simulator.
Times come out in real seconds; TPOT is computed from the real output lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from advisor.engine import perf
from advisor.engine.catalog import ModelSpec
from advisor.engine.perf import CalibrationProfile, Deployment, StepModel, memory_plan
from advisor.engine.sim import Replica, SchedulerConfig
from advisor.engine.workload import Workload


def expected_tokens_per_step(alpha: float, k: int) -> float:
    """Leviathan et al.: expected tokens per target step with k drafts at acceptance alpha."""
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def leviathan_speedup(alpha: float, k: int, cost_ratio: float) -> float:
    """Walltime speedup (1 - a^(k+1)) / ((1 - a)(k c + 1)), verification cost = one step."""
    return expected_tokens_per_step(alpha, k) / (k * cost_ratio + 1.0)


def alpha_from_acceptance_length(mean_acceptance_length: float, k: int) -> float:
    """Per-token alpha whose expected tokens per step with k drafts is the measured length.

    vLLM's mean acceptance length is 1 + accepted tokens / drafts (`vllm:spec_decode_*`).
    """
    target = min(max(mean_acceptance_length, 1.0), k + 1.0)
    if target >= k + 1.0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(60):  # bisection: E is increasing in alpha
        mid = 0.5 * (low + high)
        if expected_tokens_per_step(mid, k) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def eagle_head(model: ModelSpec) -> ModelSpec:
    """An EAGLE draft head: one decoder layer of the target's shape plus its LM head."""
    return replace(
        model,
        name=f"{model.name}-eagle-head",
        num_layers=1,
        num_experts=1,
        experts_per_token=1,
        aliases=(),
        source=f"one decoder layer of {model.name} plus its LM head (EAGLE, Li et al. 2024)",
    )


@dataclass(frozen=True)
class Drafter:
    """What proposes the draft tokens: nothing on the GPU (n-gram) or a small model."""

    method: str
    model: ModelSpec | None  # None: proposals cost no device time (n-gram / suffix lookup)
    tensor_parallel: int = 1


@dataclass(frozen=True)
class SpecConfig:
    """A speculative configuration to simulate: drafter, draft length k, acceptance alpha."""

    drafter: Drafter
    num_speculative_tokens: int
    alpha: float

    def __post_init__(self) -> None:
        if self.num_speculative_tokens < 1:
            raise ValueError("num_speculative_tokens: must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha: must be in [0, 1], got {self.alpha}")

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens_per_step(self.alpha, self.num_speculative_tokens)


def drafter_times_s(
    drafter: Drafter, target: Deployment, profile: CalibrationProfile
) -> tuple[float, float, float]:
    """One draft pass: (fixed device s, s per decoding sequence, s per context token)."""
    if drafter.model is None:
        return 0.0, 0.0, 0.0
    draft = Deployment(
        target.hardware,
        drafter.model,
        target.quant,
        kv_dtype=target.kv_dtype,
        tensor_parallel=drafter.tensor_parallel,
        kv_cache_bytes=1 << 30,  # the drafter's KV space does not matter for its step time
    )
    coef = perf.coefficients(draft, replace(profile, step_overhead_s=0.0, seq_overhead_s=0.0))
    fixed = (
        coef[perf.C_WEIGHT_DENSE_S]
        + coef[perf.C_WEIGHT_EXPERTS_S]
        + coef[perf.C_COMM_FIXED_S]
        + coef[perf.C_LAYER_S]
    )
    per_seq = coef[perf.C_LIN_S_PER_TOKEN] + coef[perf.C_COMM_S_PER_TOKEN]
    return float(fixed), float(per_seq), float(coef[perf.C_DEC_ATTN_S_PER_CTX])


@dataclass(frozen=True)
class _OverriddenStepModel(StepModel):
    overrides: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        coef = self.coef.copy()
        for index, value in self.overrides:
            coef[index] = value
        object.__setattr__(self, "coef", coef)


@dataclass(frozen=True)
class _SpecReplica(Replica):
    """A replica whose step model carries the speculative coefficients (see the docstring)."""

    overrides: tuple[tuple[int, float], ...] = ()

    @property
    def step_model(self) -> StepModel:
        return _OverriddenStepModel(self.deployment, self.profile, self.overrides)


@dataclass(frozen=True, eq=False)
class SpecProblem:
    """The transformed replica and workload, and what maps them back to real requests."""

    replica: Replica
    workload: Workload
    real_workload: Workload


def spec_problem(
    replica: Replica, workload: Workload, spec: SpecConfig, rng: np.random.Generator
) -> SpecProblem:
    """The speculative replica and the workload it serves (see the module docstring)."""
    k = spec.num_speculative_tokens
    q = k + 1
    e = spec.tokens_per_step
    prompt = workload.prompt_tokens.astype(np.float64)
    output = workload.output_tokens.astype(np.float64)
    steps = (output - 1.0) / e
    steps_int = np.floor(steps + rng.random(steps.shape[0])).astype(np.int64)
    sim_output = 1 + steps_int
    sim_prompt = np.maximum(np.ceil(prompt / q), 1.0).astype(np.int64)
    transformed = Workload(
        workload.arrival_s, sim_prompt, sim_output, workload.max_concurrency, workload.name
    )

    deployment = replica.deployment
    base = replica.step_model.coef
    scheduler = replica.scheduler
    real_plan = replica.memory
    real_tokens = float((prompt + output).sum())
    sim_tokens = float((sim_prompt + sim_output).sum())
    kv_scale = sim_tokens / real_tokens if real_tokens > 0 else 1.0
    kv_bytes = real_plan.kv_capacity_tokens * real_plan.kv_bytes_per_token_per_gpu * kv_scale
    real_ctx = float((sim_output * (prompt + 0.5 * e * sim_output)).sum())
    sim_ctx = float((sim_output * (sim_prompt + 0.5 * sim_output)).sum())
    ctx_ratio = real_ctx / sim_ctx if sim_ctx > 0 else 1.0

    fixed, per_seq, draft_attn = drafter_times_s(spec.drafter, deployment, replica.profile)
    target_attn = max(
        base[perf.C_PRE_ATTN_MEM_S_PER_TOKEN], q * base[perf.C_PRE_ATTN_FLOP_S_PER_PAIR]
    )
    overrides = (
        (perf.C_LIN_S_PER_TOKEN, float(base[perf.C_LIN_S_PER_TOKEN] * q)),
        (perf.C_COMM_S_PER_TOKEN, float(base[perf.C_COMM_S_PER_TOKEN] * q)),
        (perf.C_PRE_ATTN_MEM_S_PER_TOKEN, float(base[perf.C_PRE_ATTN_MEM_S_PER_TOKEN] * q)),
        (perf.C_PRE_ATTN_FLOP_S_PER_PAIR, float(base[perf.C_PRE_ATTN_FLOP_S_PER_PAIR] * q * q)),
        (perf.C_DEC_ATTN_S_PER_CTX, float(ctx_ratio * (target_attn + k * draft_attn))),
        (perf.C_LAYER_S, float(base[perf.C_LAYER_S] + k * fixed)),
        (perf.C_SEQ_S, float(base[perf.C_SEQ_S] + k * per_seq)),
        (perf.C_FLOPS_PER_TOKEN, float(base[perf.C_FLOPS_PER_TOKEN] * q)),
    )
    budget = max(scheduler.max_num_batched_tokens // q, 1)
    sim_scheduler = SchedulerConfig(
        max_num_seqs=min(scheduler.max_num_seqs, budget),
        max_num_batched_tokens=budget,
        enable_chunked_prefill=True,
        block_size_tokens=scheduler.block_size_tokens,
    )
    longest = int((sim_prompt + sim_output).max()) if transformed.num_requests else 1
    sim_deployment = replace(
        deployment,
        kv_cache_bytes=max(int(kv_bytes), 1),
        max_model_len=max(longest, 1),
    )
    sim_replica = _SpecReplica(sim_deployment, sim_scheduler, replica.profile, overrides)
    return SpecProblem(sim_replica, transformed, workload)


def draft_cost_ratio(
    drafter: Drafter, target: Deployment, profile: CalibrationProfile, batch: int, context: int
) -> float:
    """c of Leviathan's formula at a batch size: one draft pass over one target decode step."""
    fixed, per_seq, attn = drafter_times_s(drafter, target, profile)
    step = StepModel(target, profile).step_time_s(
        n_decode=batch, decode_context_tokens=float(batch * context)
    )
    return (fixed + batch * per_seq + attn * batch * context) / step if step > 0 else math.inf


def step_speedup(
    spec: SpecConfig,
    target: Deployment,
    profile: CalibrationProfile,
    *,
    batch: int,
    context: int,
) -> float:
    """Decode tokens/s with speculation over without, at a batch size and context (step model).

    Without: one step of `batch` sequences yields `batch` tokens. With: a verification step
    scores k + 1 tokens per sequence (a prefill-like chunk over each context) plus k draft
    passes, and yields E tokens per sequence. The ratio falls as the batch grows and the
    target's step turns compute-bound: a gain at batch 1 can become a loss.
    """
    step = StepModel(target, profile)
    k = spec.num_speculative_tokens
    q = k + 1
    plain = step.step_time_s(n_decode=batch, decode_context_tokens=float(batch * context))
    verify = step.step_time_s(
        n_decode=0,
        decode_context_tokens=0.0,
        prefill_tokens=batch * q,
        prefill_context_tokens=float(batch * (context + q)),
        prefill_pairs=float(batch * q * (context + 0.5 * (q + 1))),
        n_prefill_seqs=batch,
    )
    fixed, per_seq, attn = drafter_times_s(spec.drafter, target, profile)
    draft = k * (fixed + batch * per_seq + attn * batch * context)
    return spec.tokens_per_step * plain / (verify + draft)


def kv_tokens(replica: Replica) -> int:
    """Real KV capacity of a replica in tokens (for reports)."""
    return memory_plan(
        replica.deployment,
        max_num_batched_tokens=replica.scheduler.max_num_batched_tokens,
        max_num_seqs=replica.scheduler.max_num_seqs,
    ).kv_capacity_tokens
