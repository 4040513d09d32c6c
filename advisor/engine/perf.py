"""Step-time model: memory plan, rooflines, TP communication, overheads, calibration profiles.

One engine step serves `n_decode` decoding sequences (one token each, attending over their
contexts) and prefill chunks of `prefill_tokens` tokens. Its time is

    device = max(weight bytes / (BW eta_bw), matmul FLOPs / (F eta_f))          linear layers
           + max(KV bytes read / (BW eta_bw), attention FLOPs / (F_bf16 eta_f))  decode attention
           + max(KV bytes read / (BW eta_bw), attention FLOPs / (F_bf16 eta_f))  prefill attention
           + 2 L (allreduce_latency + 2 (TP-1)/TP tokens d 2 bytes / link BW)    (TP > 1)
           + L layer_overhead
    host   = step_overhead + seq_overhead (sequences in the step)
    step   = device + host - overlap min(device, host)

Linear layers and attention run one after the other, so each gets its own roofline (a single
max over the whole step would let memory-bound attention hide behind compute-bound matmuls).
MoE layers read only the experts the batch routes to: E (1 - (1 - k/E)^tokens) of them; dense
layers, shared experts and routers are read every step.

Per-layer attention (sliding windows, chunks, MLA latents, linear-attention state) enters the
simulator's per-context-token coefficients at the deployment's reference context c_ref: KV
bytes per context token = KV bytes a sequence holds at c_ref / c_ref (full and MLA layers grow
with the context, a sliding layer holds min(c, window), a linear layer its constant state),
KV bytes read and attention FLOPs per pair likewise (a DeepSeek-V3.2 sparse layer holds every
token but reads its index keys and only the top-k latents). This is exact at c_ref and for
models whose layers all keep every token (then c_ref plays no role); it keeps the simulator's
inner loop unchanged.

The efficiencies and overheads live in a `CalibrationProfile` per (hardware, engine); they are
fitted from measurements (`advisor.engine.calibration`), never guessed per case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
import numpy.typing as npt

from advisor.engine.catalog import GIB, HardwareSpec, ModelSpec, QuantScheme, kv_dtype_bytes
from advisor.engine.weight_format import ComputeKind

ACTIVATION_BYTES = 2  # BF16 activations on the wire for all-reduce and in the workspace
DEFAULT_WORKSPACE_FIXED_BYTES = GIB  # CUDA context, graphs, allocator slack (order of 1 GiB)
# Context at which windowed and linear-attention layers are folded into per-token KV figures
# when the caller does not give the workload's own (a typical chat context; capped by
# max_model_len). It does not matter for models whose layers all keep every token.
DEFAULT_REFERENCE_CONTEXT_TOKENS = 4096


class ConfigError(ValueError):
    """An impossible deployment or scheduler configuration; the message names the field."""


@dataclass(frozen=True)
class CalibrationProfile:
    """Efficiency and overhead parameters for one (hardware, engine); "*" matches any.

    `overlap` is the fraction of host (scheduler, sampling, detokenisation) time hidden behind
    device work: 0 = they add up, 1 = only the longer counts (async scheduling).
    `api_latency_s` is the delay from a client sending a request to the scheduler seeing it
    (HTTP, tokenisation, queues between API server and engine); it adds to TTFT and e2e, and
    in a closed loop to the time between a client's requests, not to TPOT. It is a delay,
    not a queue: fitting a single-server queue to noisy measurements capped the predicted
    throughput far below what the real server reached.
    `v0_step_overhead_s` and `v0_seq_overhead_s` are the extra host time per step and per
    sequence per step of vLLM's V0 engine (before 0.8), which rebuilt its inputs and
    broadcast them to the tensor-parallel workers in Python every step; V1's persistent batch
    does neither. `for_generation("v0")` folds them into the step and sequence overheads.
    """

    hardware: str = "*"
    engine: str = "*"
    bw_efficiency: float = 0.8
    compute_efficiency: float = 0.5
    step_overhead_s: float = 1e-3
    seq_overhead_s: float = 0.0
    layer_overhead_s: float = 0.0
    allreduce_latency_s: float = 2e-5
    overlap: float = 0.0
    api_latency_s: float = 0.0
    v0_step_overhead_s: float = 0.0
    v0_seq_overhead_s: float = 0.0
    source: str = "unfitted defaults"
    fit_median_ape: float | None = None
    fit_points: int = 0

    def __post_init__(self) -> None:
        for name in ("bw_efficiency", "compute_efficiency"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"profile.{name}: must be in (0, 1], got {value}")
        for name in ("step_overhead_s", "seq_overhead_s", "layer_overhead_s"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"profile.{name}: must be >= 0, got {getattr(self, name)}")
        for name in (
            "allreduce_latency_s",
            "api_latency_s",
            "v0_step_overhead_s",
            "v0_seq_overhead_s",
        ):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"profile.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ConfigError(f"profile.overlap: must be in [0, 1], got {self.overlap}")

    def to_dict(self) -> dict[str, object]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def for_generation(self, generation: str) -> CalibrationProfile:
        """The profile an engine generation runs with: "v1" as is, "v0" with its extra host
        overheads added to `step_overhead_s` and `seq_overhead_s`."""
        if generation == "v1":
            return self
        if generation != "v0":
            raise ConfigError(f"generation: must be 'v0' or 'v1', got {generation!r}")
        return replace(
            self,
            step_overhead_s=self.step_overhead_s + self.v0_step_overhead_s,
            seq_overhead_s=self.seq_overhead_s + self.v0_seq_overhead_s,
            v0_step_overhead_s=0.0,
            v0_seq_overhead_s=0.0,
        )

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CalibrationProfile:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"profile: unknown field(s) {unknown}")
        return cls(**data)  # type: ignore[arg-type]


FITTABLE = (
    "bw_efficiency",
    "compute_efficiency",
    "step_overhead_s",
    "seq_overhead_s",
    "layer_overhead_s",
    "allreduce_latency_s",
    "overlap",
    "api_latency_s",
    "v0_step_overhead_s",
    "v0_seq_overhead_s",
)


@dataclass(frozen=True)
class MemoryPlan:
    """Where a GPU's memory goes (per device) and how many KV tokens fit."""

    weight_bytes_per_gpu: float
    workspace_bytes_per_gpu: float
    usable_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float  # at the reference context (see the module docstring)
    kv_capacity_tokens: int
    reference_context_tokens: int = 0

    @property
    def fits(self) -> bool:
        return self.kv_capacity_tokens > 0


@dataclass(frozen=True)
class Deployment:
    """One replica: a model at a precision on `tensor_parallel` devices of one hardware kind.

    `kv_cache_bytes` fixes the KV space per device (vLLM CPU: VLLM_CPU_KVCACHE_SPACE) instead of
    deriving it from gpu_memory_utilization. `reference_context_tokens`: the workload's typical
    context, at which sliding-window and linear-attention layers are folded into per-token KV
    (default `DEFAULT_REFERENCE_CONTEXT_TOKENS`, capped by max_model_len). A model that
    carries its own weight format (a quantized checkpoint's config.json) is sized and computes
    by it; `quant` applies to models without one. Raises `ConfigError` if the model cannot be
    served (TP does not divide the heads, or weights leave no room for KV).
    """

    hardware: HardwareSpec
    model: ModelSpec
    quant: QuantScheme
    kv_dtype: str = "auto"
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    kv_cache_bytes: int | None = None
    reference_context_tokens: int | None = None

    def __post_init__(self) -> None:
        tp = self.tensor_parallel
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ConfigError(f"tensor_parallel: must be an integer >= 1, got {tp!r}")
        if self.model.num_heads % tp:
            raise ConfigError(
                f"tensor_parallel: {tp} does not divide the {self.model.num_heads} attention "
                f"heads of {self.model.name}"
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        kv_dtype_bytes(self.kv_dtype)
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"max_model_len: must be >= 1, got {self.max_model_len}")
        reference = self.reference_context_tokens
        if reference is not None and (
            isinstance(reference, bool) or not isinstance(reference, int) or reference < 1
        ):
            raise ConfigError(
                f"reference_context_tokens: must be an integer >= 1, got {reference!r}"
            )
        plan = memory_plan(self, max_num_batched_tokens=2048, max_num_seqs=1)
        if not plan.fits:
            need = plan.weight_bytes_per_gpu + plan.workspace_bytes_per_gpu
            raise ConfigError(
                f"tensor_parallel: {self.model.name} at {self.quant.name} needs "
                f"{need / GIB:.1f} GiB per device for weights and workspace at TP={tp}, but "
                f"{self.hardware.name} offers {plan.usable_bytes_per_gpu / GIB:.1f} GiB at "
                f"gpu_memory_utilization={self.gpu_memory_utilization}: the model does not fit"
            )

    @property
    def kv_bytes_per_token(self) -> float:
        """Whole-model KV bytes each token adds at long context (all devices together): the
        layers that keep every token; see `memory_plan` for windowed and linear layers."""
        return self.model.kv_bytes_per_token(kv_dtype_bytes(self.kv_dtype), kv_dtype=self.kv_dtype)

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights at this precision (embeddings stay BF16 unless quantized)."""
        return weight_bytes(self.model, self.quant)

    @property
    def effective_max_model_len(self) -> int:
        return self.max_model_len or self.model.max_position_embeddings

    @property
    def reference_context(self) -> int:
        """Context at which windowed/linear layers are folded into per-token figures."""
        wanted = self.reference_context_tokens or DEFAULT_REFERENCE_CONTEXT_TOKENS
        return max(min(wanted, self.effective_max_model_len), 1)

    @property
    def compute(self) -> ComputeKind:
        """The matmul compute kind: the checkpoint's own format's, else the scheme's."""
        return self.model.compute or self.quant.compute


def weight_bytes(model: ModelSpec, quant: QuantScheme) -> float:
    """Bytes of all weights: per tensor group by the model's own format when it has one,
    else every non-embedding parameter at `quant` (embeddings BF16 unless quantized)."""
    if model.weight_format is not None:
        return sum(model.weight_bytes_by_group(quant).values())
    embed_params = model.embedding_params + (
        0 if model.tie_word_embeddings else model.lm_head_params
    )
    body = model.total_params - embed_params
    embed_bytes = quant.weight_bytes_per_param if quant.quantizes_embeddings else 2.0
    return body * quant.weight_bytes_per_param + embed_params * embed_bytes


@dataclass(frozen=True)
class AttentionCosts:
    """Per-device attention figures of a deployment, folded at its reference context."""

    kv_bytes_per_token: float  # KV bytes held per context token (capacity)
    kv_read_bytes_per_token: float  # KV bytes a decode step reads per context token
    decode_flops_per_pair: float  # per (query, context token) in decode
    prefill_flops_per_pair: float  # per causal (query, key) pair in prefill
    flops_per_token: float  # linear attention's recurrent update, per token


def attention_costs(
    model: ModelSpec, tensor_parallel: int, kv_bytes: float, reference: int, kv_dtype: str
) -> AttentionCosts:
    """Fold each layer's KV and attention FLOPs into per-token / per-pair figures at `reference`.

    Layers that keep and attend to every token contribute exactly (per token); a
    sliding/chunked layer what it holds (attends to) at `reference` divided by `reference`; a
    linear layer its state; a sparse (DeepSeek-V3.2) layer holds its latents and index keys
    for every token but reads the index keys and only its top-k latents. KV heads below one
    per device are replicated; an MLA latent and index are on every device. `kv_dtype` (the
    `--kv-cache-dtype` name) decides whether a sparse MLA layer packs its latent.
    """
    tp = tensor_parallel
    held_growing = read_growing = held_part = read_part = 0.0
    dec_full = dec_part = pre_full = pre_part = per_token = 0.0
    full_pairs = reference * (reference + 1) / 2
    for layer in model.layers:
        attention = layer.attention
        packed = attention.stores_packed(kv_dtype)
        if attention.kind == "linear":
            held_part += attention.state_bytes_per_sequence / tp
            read_part += attention.state_bytes_per_sequence / tp
            per_token += attention.flops_per_token / tp
            continue
        share = 1.0
        if attention.kv_shards_over_tp:
            per_device = max(attention.num_kv_heads / tp, 1.0)
            share = per_device / attention.num_kv_heads
        element_bytes = attention.kv_elements_per_token * share * kv_bytes
        if packed:  # a sparse MLA layer's fp8_ds_mla record (see AttentionSpec)
            element_bytes = float(attention.packed_kv_bytes_per_token())
        keys = attention.attended_keys(reference)
        if attention.kind in ("full", "mla") and not attention.sparse_topk:
            held_growing += element_bytes
            read_growing += element_bytes
            dec_full += attention.decode_flops_per_pair
            pre_full += attention.prefill_flops_per_pair
            continue
        if attention.sparse_topk:
            held_growing += element_bytes + attention.index_bytes_per_token
            read_growing += attention.index_bytes_per_token
            dec_full += attention.index_flops_per_pair
            pre_full += attention.index_flops_per_pair
        else:
            held_part += element_bytes * attention.cached_tokens(reference)
        read_part += element_bytes * keys
        dec_part += attention.decode_flops_per_pair * keys
        pre_part += attention.prefill_flops_per_pair * attention.causal_pairs(reference)
    held = held_growing + held_part / reference if held_part else held_growing
    read = read_growing + read_part / reference if read_part else read_growing
    decode = (dec_full + (dec_part / reference if dec_part else 0.0)) / tp
    prefill = (pre_full + (pre_part / full_pairs if pre_part else 0.0)) / tp
    return AttentionCosts(held, read, decode, prefill, per_token)


def memory_plan(
    deployment: Deployment, *, max_num_batched_tokens: int, max_num_seqs: int
) -> MemoryPlan:
    """Weights, workspace and KV capacity per device (vLLM's profile-then-allocate, estimated).

    The workspace is vLLM's profiling peak: activations of one forward pass at
    `max_num_batched_tokens` tokens and FP32 logits for `max_num_seqs` sequences, plus about
    1 GiB of CUDA context and graphs.
    """
    model, tp = deployment.model, deployment.tensor_parallel
    weights = weight_bytes(model, deployment.quant) / tp
    reference = deployment.reference_context
    kv_per_token = attention_costs(
        model, tp, kv_dtype_bytes(deployment.kv_dtype), reference, deployment.kv_dtype
    ).kv_bytes_per_token
    # Peak activations of one forward at max_num_batched_tokens, plus FP32 logits for sampling.
    activations = (
        max_num_batched_tokens
        * (6 * model.hidden_size + 2 * model.intermediate_size / tp)
        * ACTIVATION_BYTES
    )
    logits = max_num_seqs * model.vocab_size * 4
    if deployment.kv_cache_bytes is not None:
        usable = float(deployment.kv_cache_bytes) + weights
        workspace = 0.0
        kv_space = float(deployment.kv_cache_bytes)
    else:
        workspace = DEFAULT_WORKSPACE_FIXED_BYTES + activations + logits
        usable = deployment.hardware.memory_bytes * deployment.gpu_memory_utilization
        kv_space = usable - weights - workspace
    capacity = int(kv_space // kv_per_token) if kv_space > 0 else 0
    return MemoryPlan(weights, workspace, usable, kv_per_token, capacity, reference)


# Indices into the coefficient vector the simulators read (keep in sync with `coefficients`).
C_WEIGHT_DENSE_S = 0  # dense weights read time per step (s)
C_WEIGHT_EXPERTS_S = 1  # time to read ALL experts (s); scaled by the routed fraction
C_NUM_EXPERTS = 2
C_TOPK = 3
C_LIN_S_PER_TOKEN = 4  # matmul compute time per token (s)
C_DEC_ATTN_S_PER_CTX = 5  # decode attention time per context token (s)
C_PRE_ATTN_MEM_S_PER_TOKEN = 6  # prefill: KV read time per context token (s)
C_PRE_ATTN_FLOP_S_PER_PAIR = 7  # prefill: attention compute time per (query, key) pair (s)
C_COMM_FIXED_S = 8
C_COMM_S_PER_TOKEN = 9
C_LAYER_S = 10
C_STEP_S = 11
C_SEQ_S = 12
C_OVERLAP = 13
C_BYTES_DENSE = 14  # for MBU: dense weight bytes per device per step
C_BYTES_EXPERTS = 15
C_KV_BYTES_PER_CTX = 16
C_FLOPS_PER_TOKEN = 17  # for MFU: matmul FLOPs per token per device
C_ATTN_FLOPS_PER_PAIR = 18
C_API_LATENCY_S = 19  # client send -> scheduler (s)
NUM_COEFFICIENTS = 20


@dataclass(frozen=True)
class StepModel:
    """Step times for one deployment under one calibration profile."""

    deployment: Deployment
    profile: CalibrationProfile
    coef: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coef", coefficients(self.deployment, self.profile))

    @property
    def peak_bandwidth_bytes_per_s(self) -> float:
        return self.deployment.hardware.bandwidth_bytes_per_s

    @property
    def peak_flops_per_s(self) -> float:
        return self.deployment.hardware.peak_flops_per_s(self.deployment.compute)

    def step_time_s(
        self,
        *,
        n_decode: int,
        decode_context_tokens: float,
        prefill_tokens: int = 0,
        prefill_context_tokens: float = 0.0,
        prefill_pairs: float = 0.0,
        n_prefill_seqs: int = 0,
    ) -> float:
        """Duration of one step (see the module docstring).

        decode_context_tokens: sum over decoding sequences of the tokens each attends to.
        prefill_context_tokens: sum over prefill chunks of (earlier context + chunk) tokens.
        prefill_pairs: sum over chunks of causal (query, key) pairs, n (c + (n + 1) / 2).
        """
        return step_time(
            self.coef,
            n_decode,
            decode_context_tokens,
            prefill_tokens,
            prefill_context_tokens,
            prefill_pairs,
            n_decode + n_prefill_seqs,
        )


def coefficients(deployment: Deployment, profile: CalibrationProfile) -> npt.NDArray[np.float64]:
    model, hw, tp = deployment.model, deployment.hardware, deployment.tensor_parallel
    quant = deployment.quant
    bw = hw.bandwidth_bytes_per_s * profile.bw_efficiency
    flops = hw.peak_flops_per_s(deployment.compute) * profile.compute_efficiency
    attn_flops = hw.bf16_flops_per_s * profile.compute_efficiency
    all_weights = weight_bytes(model, quant)
    by_group = model.weight_bytes_by_group(quant)
    # Routed experts only (dense-first layers, shared experts and routers are read every step).
    experts = by_group["experts"] if model.is_moe else 0.0
    # The embedding table is only gathered from (a few rows), never streamed.
    embed_bytes = by_group["embeddings"]
    streamed = all_weights - (0.0 if model.tie_word_embeddings else embed_bytes)
    dense = (streamed - experts) / tp
    experts /= tp
    costs = attention_costs(
        model,
        tp,
        kv_dtype_bytes(deployment.kv_dtype),
        deployment.reference_context,
        deployment.kv_dtype,
    )
    kv_bytes_per_ctx = costs.kv_read_bytes_per_token
    attn_flops_per_pair = costs.decode_flops_per_pair
    lin_flops_per_token = 2.0 * model.matmul_params_per_token / tp + costs.flops_per_token
    coef = np.zeros(NUM_COEFFICIENTS)
    coef[C_WEIGHT_DENSE_S] = dense / bw
    coef[C_WEIGHT_EXPERTS_S] = experts / bw
    coef[C_NUM_EXPERTS] = model.num_experts
    coef[C_TOPK] = model.experts_per_token
    coef[C_LIN_S_PER_TOKEN] = lin_flops_per_token / flops
    coef[C_DEC_ATTN_S_PER_CTX] = max(kv_bytes_per_ctx / bw, attn_flops_per_pair / attn_flops)
    coef[C_PRE_ATTN_MEM_S_PER_TOKEN] = kv_bytes_per_ctx / bw
    coef[C_PRE_ATTN_FLOP_S_PER_PAIR] = costs.prefill_flops_per_pair / attn_flops
    if tp > 1:
        coef[C_COMM_FIXED_S] = 2 * model.num_layers * profile.allreduce_latency_s
        coef[C_COMM_S_PER_TOKEN] = (
            2
            * model.num_layers
            * 2
            * (tp - 1)
            / tp
            * model.hidden_size
            * ACTIVATION_BYTES
            / hw.link_bytes_per_s
        )
    coef[C_LAYER_S] = model.num_layers * profile.layer_overhead_s
    coef[C_STEP_S] = profile.step_overhead_s
    coef[C_SEQ_S] = profile.seq_overhead_s
    coef[C_OVERLAP] = profile.overlap
    coef[C_BYTES_DENSE] = dense
    coef[C_BYTES_EXPERTS] = experts
    coef[C_KV_BYTES_PER_CTX] = kv_bytes_per_ctx
    coef[C_FLOPS_PER_TOKEN] = lin_flops_per_token
    coef[C_ATTN_FLOPS_PER_PAIR] = attn_flops_per_pair
    coef[C_API_LATENCY_S] = profile.api_latency_s
    return coef


def routed_fraction(num_experts: float, top_k: float, tokens: float) -> float:
    """Expected fraction of experts that at least one of `tokens` tokens routes to."""
    if num_experts <= 1.0 or tokens <= 0:
        return 1.0 if tokens > 0 else 0.0
    return float(1.0 - (1.0 - top_k / num_experts) ** tokens)


def linear_time(coef: npt.NDArray[np.float64], tokens: float) -> float:
    """Matmul time for a step of `tokens` tokens: weight streaming vs compute roofline."""
    memory = coef[C_WEIGHT_DENSE_S] + coef[C_WEIGHT_EXPERTS_S] * routed_fraction(
        coef[C_NUM_EXPERTS], coef[C_TOPK], tokens
    )
    return float(max(memory, tokens * coef[C_LIN_S_PER_TOKEN]))


def step_time(
    coef: npt.NDArray[np.float64],
    n_decode: float,
    decode_context_tokens: float,
    prefill_tokens: float,
    prefill_context_tokens: float,
    prefill_pairs: float,
    n_seqs: float,
) -> float:
    """The step-time formula on a coefficient vector (the simulators' compiled copy matches)."""
    tokens = n_decode + prefill_tokens
    device = linear_time(coef, tokens)
    device += coef[C_DEC_ATTN_S_PER_CTX] * decode_context_tokens
    if prefill_tokens > 0:
        device += max(
            coef[C_PRE_ATTN_MEM_S_PER_TOKEN] * prefill_context_tokens,
            coef[C_PRE_ATTN_FLOP_S_PER_PAIR] * prefill_pairs,
        )
    device += coef[C_COMM_FIXED_S] + coef[C_COMM_S_PER_TOKEN] * tokens + coef[C_LAYER_S]
    host = coef[C_STEP_S] + coef[C_SEQ_S] * n_seqs
    return float(device + host - coef[C_OVERLAP] * min(device, host))


def decode_speed_tok_per_s(step_model: StepModel, context_tokens: int) -> float:
    """Single-sequence decode speed at a given context (a quick sanity figure)."""
    seconds = step_model.step_time_s(n_decode=1, decode_context_tokens=context_tokens + 1)
    return 1.0 / seconds if seconds > 0 else math.inf
