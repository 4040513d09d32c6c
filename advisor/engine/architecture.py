"""Per-layer architecture of a decoder: what each layer attends with and what MLP it runs.

A `LayerSpec` pairs an `AttentionSpec` (full, sliding window, chunked local, MLA latent (dense
or DeepSeek-V3.2 sparse: top-k keys picked by an indexer), or linear attention with a constant
state per sequence) with an `MlpSpec` (dense, or MoE with
routed and shared experts). From the tuple of layers a model derives KV bytes per sequence at
a context length (a sliding or chunked layer stops growing at its window, a linear layer holds
a fixed state), attention FLOPs per (query, key) pair, and parameters per tensor group.

`read_layers(config, ...)` builds the tuple from a Hugging Face config.json (text part); what
it does not understand it appends to `assumptions` instead of guessing silently, and a
malformed field raises `CatalogError` naming it. Facts are from the transformers modelling
files and vLLM's model files for each family (see /work/shared/reference/MODEL_ARCH.md).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # catalog imports this module; the type is only named here
    from advisor.engine.catalog import ModelSpec

AttentionKind = Literal["full", "sliding", "chunked", "mla", "linear"]
MlpKind = Literal["dense", "moe"]

# Tensor groups weights are counted in (and quantized by); vectors (norms, biases) stay 16-bit.
GROUPS = (
    "attention",
    "dense_mlp",
    "experts",
    "shared_experts",
    "router",
    "norms",
    "embeddings",
    "lm_head",
)

# `--kv-cache-dtype` values that keep KV in 16 bits (the others are 8-bit or "auto").
SIXTEEN_BIT_KV_DTYPES = frozenset({"bf16", "bfloat16", "fp16", "float16", "half"})


class ArchitectureError(ValueError):
    """A malformed architecture field; `catalog` re-raises it as `CatalogError`."""


@dataclass(frozen=True)
class GroupParams:
    """Parameters of one tensor group: matrices (quantizable) and vectors (kept in 16 bits)."""

    matrix: int = 0
    vector: int = 0

    @property
    def total(self) -> int:
        return self.matrix + self.vector

    def __add__(self, other: GroupParams) -> GroupParams:
        return GroupParams(self.matrix + other.matrix, self.vector + other.vector)


@dataclass(frozen=True)
class AttentionSpec:
    """One layer's attention.

    `kv_elements_per_token`: elements this layer caches per token (K and V of its KV heads,
    or the MLA latent). `window_tokens`: the sliding window or the chunk size. A linear layer
    caches nothing per token but holds `state_bytes_per_sequence`. FLOPs per (query, key) pair
    cover all heads of the layer (QK^T and PV); MLA decodes in the absorbed form (latent
    dims) and prefills in the expanded form, so the two differ.
    """

    kind: AttentionKind
    num_heads: int
    num_kv_heads: int
    qk_head_dim: int
    v_head_dim: int
    kv_elements_per_token: int
    params: GroupParams
    window_tokens: int = 0
    state_bytes_per_sequence: int = 0
    decode_flops_per_pair: int = 0
    prefill_flops_per_pair: int = 0
    flops_per_token: int = 0  # linear attention's recurrent update (no pairs)
    sinks: bool = False
    kv_shards_over_tp: bool = True  # False: MLA's latent is replicated on every TP rank
    # DeepSeek sparse attention (V3.2): an indexer scores every cached token with its own
    # small key cache and the layer attends to the top `sparse_topk` of them only.
    sparse_topk: int = 0
    index_bytes_per_token: int = 0  # the indexer's key cache (fp8 key + scale), any kv_dtype
    index_flops_per_pair: int = 0
    rope_elements_per_token: int = 0  # MLA: the rope part of the cached latent

    def packed_kv_bytes_per_token(self) -> int:
        """vLLM's "fp8_ds_mla" record for a sparse MLA layer (FlashMLA sparse backend): the
        latent in FP8 with an FP32 scale per 128 values, the rope part in BF16 (DeepSeek-V3.2:
        512 + 16 + 128 = 656 bytes a token)."""
        latent = self.kv_elements_per_token - self.rope_elements_per_token
        return latent + latent // 128 * 4 + 2 * self.rope_elements_per_token

    def stores_packed(self, kv_dtype: str) -> bool:
        """Whether vLLM keeps this layer's KV as `packed_kv_bytes_per_token`: a sparse MLA
        layer does by default (`--kv-cache-dtype auto`) and for any fp8 dtype; only an
        explicit 16-bit dtype keeps the latent in BF16 (vLLM recipes, DeepSeek-V3.2)."""
        return (
            bool(self.sparse_topk)
            and self.kind == "mla"
            and kv_dtype.strip().lower() not in (SIXTEEN_BIT_KV_DTYPES)
        )

    def cached_tokens(self, context_tokens: int) -> int:
        """Tokens whose KV this layer holds for a sequence of `context_tokens` tokens.

        A chunked layer is charged a whole chunk once the context reaches it (vLLM keeps
        the current chunk's blocks; what it allocates is bounded by the chunk).
        """
        if self.kind in ("full", "mla"):
            return context_tokens
        if self.kind in ("sliding", "chunked"):
            return min(context_tokens, self.window_tokens)
        return 0

    def attended_keys(self, context_tokens: int) -> int:
        """Keys the newest token of a `context_tokens`-token sequence attends to."""
        if context_tokens <= 0:
            return 0
        if self.sparse_topk:
            return min(context_tokens, self.sparse_topk)
        if self.kind in ("full", "mla"):
            return context_tokens
        if self.kind == "sliding":
            return min(context_tokens, self.window_tokens)
        if self.kind == "chunked":
            return (context_tokens - 1) % self.window_tokens + 1
        return 0

    def causal_pairs(self, prompt_tokens: int) -> int:
        """(query, key) pairs of a prompt of `prompt_tokens` tokens prefilled from empty."""
        n = prompt_tokens
        if n <= 0 or self.kind == "linear":
            return 0
        if self.kind in ("full", "mla") and not self.sparse_topk:
            return n * (n + 1) // 2
        w = self.sparse_topk or self.window_tokens
        if self.kind in ("sliding", "mla"):  # each query sees its last w keys (sparse: top w)
            if n <= w:
                return n * (n + 1) // 2
            return w * (w + 1) // 2 + (n - w) * w
        chunks, rest = divmod(n, w)
        return chunks * (w * (w + 1) // 2) + rest * (rest + 1) // 2

    def kv_bytes(self, context_tokens: int, kv_bytes_per_element: float) -> float:
        """KV bytes held for a sequence (with the indexer's key cache of a sparse layer)."""
        tokens = self.cached_tokens(context_tokens)
        return tokens * (self.kv_elements_per_token * kv_bytes_per_element) + (
            tokens * self.index_bytes_per_token
        )


@dataclass(frozen=True)
class MlpSpec:
    """One layer's MLP: dense, or MoE (routed experts, top-k, optional shared experts).

    `intermediate_size` is the dense MLP's, or one routed expert's. `shared_intermediate_size`
    is the total of the shared experts (DeepSeek: n_shared_experts x moe_intermediate_size).
    `matrices`: 3 for a gated MLP (gate, up, down), 2 for a plain one.
    """

    kind: MlpKind
    intermediate_size: int
    num_experts: int = 0
    experts_per_token: int = 0
    shared_intermediate_size: int = 0
    matrices: int = 3
    expert_bias: bool = False  # gpt-oss: a bias on every expert's gate_up and down
    router_vector_params: int = 0  # router bias or score-correction bias
    shared_gate: bool = False  # Qwen2-MoE / Qwen3-Next: a sigmoid gate on the shared expert

    def params(self, hidden: int) -> dict[str, GroupParams]:
        if self.kind == "dense":
            return {"dense_mlp": GroupParams(self.matrices * hidden * self.intermediate_size)}
        expert = self.matrices * hidden * self.intermediate_size
        expert_vector = (2 * self.intermediate_size + hidden) if self.expert_bias else 0
        shared = self.matrices * hidden * self.shared_intermediate_size
        return {
            "experts": GroupParams(self.num_experts * expert, self.num_experts * expert_vector),
            "shared_experts": GroupParams(shared + (hidden if self.shared_gate else 0)),
            "router": GroupParams(hidden * self.num_experts, self.router_vector_params),
        }

    def active_fraction(self) -> float:
        """Share of the routed experts a token passes through (1 for a dense MLP)."""
        return self.experts_per_token / self.num_experts if self.kind == "moe" else 1.0


@dataclass(frozen=True)
class LayerSpec:
    attention: AttentionSpec
    mlp: MlpSpec
    norm_params: int  # RMSNorm weights of the layer (2 x hidden; Gemma: 4 x hidden)


# --- reading a config.json ---------------------------------------------------------------------


def _int(config: Mapping[str, Any], name: str, source: str) -> int | None:
    value = config.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArchitectureError(f"{source}: {name} must be a non-negative integer, got {value!r}")
    return value


def _need(config: Mapping[str, Any], name: str, source: str) -> int:
    value = _int(config, name, source)
    if not value:
        raise ArchitectureError(f"{source}: missing {name}")
    return value


def _int_list(config: Mapping[str, Any], name: str, source: str) -> list[int] | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or any(
        isinstance(item, bool) or not isinstance(item, int) for item in value
    ):
        raise ArchitectureError(f"{source}: {name} must be a list of integers, got {value!r}")
    return list(value)


def standard_attention(
    *,
    kind: AttentionKind,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    qkv_bias: bool = False,
    o_bias: bool = False,
    qk_norm: bool = False,
    output_gate: bool = False,
    sinks: bool = False,
    window_tokens: int = 0,
) -> AttentionSpec:
    """Multi-head / grouped-query attention (q, k, v, o projections)."""
    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    # Qwen3-Next's q_proj also emits a per-head output gate: twice the query width.
    matrix = hidden * (q_out * (2 if output_gate else 1) + 2 * kv_out) + q_out * hidden
    vector = (q_out + 2 * kv_out if qkv_bias else 0) + (hidden if o_bias else 0)
    vector += 2 * head_dim if qk_norm else 0
    vector += heads if sinks else 0
    pair_flops = 2 * heads * (head_dim + head_dim)  # QK^T and PV, 2 FLOPs per multiply-add
    return AttentionSpec(
        kind=kind,
        num_heads=heads,
        num_kv_heads=kv_heads,
        qk_head_dim=head_dim,
        v_head_dim=head_dim,
        kv_elements_per_token=2 * kv_out,
        params=GroupParams(matrix, vector),
        window_tokens=window_tokens,
        decode_flops_per_pair=pair_flops,
        prefill_flops_per_pair=pair_flops,
        sinks=sinks,
    )


def _mla_attention(
    config: Mapping[str, Any], hidden: int, heads: int, source: str
) -> AttentionSpec:
    """DeepSeek-V2/V3 multi-head latent attention (vLLM caches kv_lora_rank + qk_rope_head_dim)."""
    kv_lora = _need(config, "kv_lora_rank", source)
    rope = _need(config, "qk_rope_head_dim", source)
    nope = _need(config, "qk_nope_head_dim", source)
    v_dim = _need(config, "v_head_dim", source)
    q_lora = _int(config, "q_lora_rank", source)
    qk_dim = nope + rope
    if q_lora:  # q_a_proj, q_a_layernorm, q_b_proj
        q_matrix, q_vector = hidden * q_lora + q_lora * heads * qk_dim, q_lora
    else:
        q_matrix, q_vector = hidden * heads * qk_dim, 0
    matrix = (
        q_matrix
        + hidden * (kv_lora + rope)  # kv_a_proj_with_mqa
        + kv_lora * heads * (nope + v_dim)  # kv_b_proj
        + heads * v_dim * hidden  # o_proj
    )
    vector = q_vector + kv_lora  # + kv_a_layernorm
    topk = _int(config, "index_topk", source) or 0
    index_bytes = index_flops = 0
    if topk:
        # DeepSeek-V3.2 indexer: wq_b (q_lora -> index heads x dim), wk, weights_proj, k_norm
        index_heads = _need(config, "index_n_heads", source)
        index_dim = _need(config, "index_head_dim", source)
        matrix += (q_lora or hidden) * index_heads * index_dim + hidden * index_dim
        matrix += hidden * index_heads
        vector += 2 * index_dim
        # vLLM's indexer key cache: an fp8 key plus an fp32 scale per 128 elements
        index_bytes = index_dim + index_dim // 128 * 4
        index_flops = 2 * index_heads * index_dim
    return AttentionSpec(
        kind="mla",
        num_heads=heads,
        num_kv_heads=1,
        qk_head_dim=qk_dim,
        v_head_dim=v_dim,
        kv_elements_per_token=kv_lora + rope,
        params=GroupParams(matrix, vector),
        # decode (absorbed): scores over the latent + rope dims, values over the latent
        decode_flops_per_pair=2 * heads * ((kv_lora + rope) + kv_lora),
        # prefill (expanded K and V): scores over qk dims, values over v_head_dim
        prefill_flops_per_pair=2 * heads * (qk_dim + v_dim),
        kv_shards_over_tp=False,
        sparse_topk=topk,
        index_bytes_per_token=index_bytes,
        index_flops_per_pair=index_flops,
        rope_elements_per_token=rope,
    )


def _linear_attention(
    config: Mapping[str, Any], hidden: int, source: str, assumptions: MutableSequence[str]
) -> AttentionSpec:
    """Qwen3-Next gated DeltaNet: a fixed recurrent state and conv state per sequence."""
    k_heads = _need(config, "linear_num_key_heads", source)
    v_heads = _need(config, "linear_num_value_heads", source)
    k_dim = _need(config, "linear_key_head_dim", source)
    v_dim = _need(config, "linear_value_head_dim", source)
    kernel = _int(config, "linear_conv_kernel_dim", source) or 4
    key_dim, value_dim = k_heads * k_dim, v_heads * v_dim
    conv_dim = 2 * key_dim + value_dim
    matrix = (
        hidden * (2 * key_dim + 2 * value_dim)  # in_proj_qkvz
        + hidden * 2 * v_heads  # in_proj_ba
        + value_dim * hidden  # out_proj
    )
    vector = conv_dim * kernel + 2 * v_heads + v_dim  # conv1d, dt_bias + A_log, gated norm
    recurrent = v_heads * k_dim * v_dim
    ssm_bytes = 4 if str(config.get("mamba_ssm_dtype", "")).lower() == "float32" else 2
    if ssm_bytes == 2:
        note = "linear-attention state held in bf16 (vLLM mamba_ssm_cache_dtype auto)"
        if note not in assumptions:
            assumptions.append(note)
    return AttentionSpec(
        kind="linear",
        num_heads=v_heads,
        num_kv_heads=k_heads,
        qk_head_dim=k_dim,
        v_head_dim=v_dim,
        kv_elements_per_token=0,
        params=GroupParams(matrix, vector),
        state_bytes_per_sequence=recurrent * ssm_bytes + conv_dim * (kernel - 1) * 2,
        # per token and head: decay (1), S^T k (2), rank-1 update (2), S^T q (2) = 7 d_k d_v
        flops_per_token=7 * recurrent,
    )


def _mamba2_mixer(
    config: Mapping[str, Any], hidden: int, source: str, assumptions: MutableSequence[str]
) -> AttentionSpec:
    """A Mamba-2 mixer (Nemotron-H): a fixed SSM state and conv state per sequence."""
    heads = _need(config, "mamba_num_heads", source)
    head_dim = _need(config, "mamba_head_dim", source)
    state = _need(config, "ssm_state_size", source)
    groups = _int(config, "n_groups", source) or 1
    kernel = _int(config, "conv_kernel", source) or 4
    inner = heads * head_dim
    conv_dim = inner + 2 * groups * state
    # in_proj emits x and z (inner each), B and C (groups x state each) and dt (one per head)
    matrix = hidden * (2 * inner + 2 * groups * state + heads) + inner * hidden
    conv_bias = conv_dim if config.get("use_conv_bias", True) else 0
    vector = conv_dim * kernel + conv_bias + 3 * heads + inner  # dt_bias, A_log, D; gated norm
    ssm_bytes = 4 if str(config.get("mamba_ssm_cache_dtype", "")).lower() == "float32" else 2
    note = (
        f"Mamba-2 SSM state held in {'fp32' if ssm_bytes == 4 else 'bf16'} "
        "(the config's mamba_ssm_cache_dtype, as vLLM takes it)"
    )
    if note not in assumptions:
        assumptions.append(note)
    recurrent = heads * head_dim * state
    return AttentionSpec(
        kind="linear",
        num_heads=heads,
        num_kv_heads=groups,
        qk_head_dim=state,
        v_head_dim=head_dim,
        kv_elements_per_token=0,
        params=GroupParams(matrix, vector),
        state_bytes_per_sequence=recurrent * ssm_bytes + conv_dim * (kernel - 1) * 2,
        # per token: decay and rank-1 update of the state (4), readout C^T h (2)
        flops_per_token=6 * recurrent,
    )


_HYBRID_MIXERS = "M*"
_HYBRID_MLPS = "E-"


def _hybrid_layers(
    config: Mapping[str, Any],
    *,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    model_type: str,
    source: str,
    assumptions: MutableSequence[str],
) -> tuple[LayerSpec, ...]:
    """Nemotron-H's `hybrid_override_pattern`: one block per character (M Mamba-2, * attention,
    E MoE, - MLP), each with its own norm. A mixer and the MLP block after it are paired into
    one `LayerSpec`; a mixer followed by another mixer gets an empty MLP."""
    pattern = config.get("hybrid_override_pattern")
    layers = _int(config, "num_hidden_layers", source)
    if not isinstance(pattern, str) or len(pattern) != layers:
        raise ArchitectureError(
            f"{source}: hybrid_override_pattern must be a string of {layers} characters "
            "(num_hidden_layers)"
        )
    unknown = sorted(set(pattern) - set(_HYBRID_MIXERS + _HYBRID_MLPS))
    if unknown:
        raise ArchitectureError(
            f"{source}: hybrid_override_pattern has unknown block type(s) {unknown}; "
            "known: M (Mamba-2), * (attention), E (MoE), - (MLP)"
        )
    moe_config = {**config, "first_k_dense_replace": 0, "moe_layer_freq": 1}
    if config.get("moe_shared_expert_intermediate_size"):
        moe_config["shared_expert_intermediate_size"] = config[
            "moe_shared_expert_intermediate_size"
        ]
        moe_config.pop("n_shared_experts", None)
    plain = str(config.get("mlp_hidden_act", "")).lower() in ("relu2", "relu_squared")
    matrices = 2 if plain else 3
    moe = dense = None
    if "E" in pattern:
        moe = _mlps(moe_config, 1, model_type, source)[0]
        moe = replace(moe, matrices=matrices, shared_gate=False)
    if "-" in pattern:
        dense_size = _need(config, "intermediate_size", source)
        dense = MlpSpec("dense", dense_size, matrices=matrices)
    mamba = _mamba2_mixer(config, hidden, source, assumptions) if "M" in pattern else None
    attention = standard_attention(
        kind="full", hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim
    )
    empty_mlp = MlpSpec("dense", 0)
    empty_mixer = AttentionSpec("linear", 0, 0, 0, 0, 0, GroupParams())
    result: list[LayerSpec] = []
    index = 0
    while index < len(pattern):
        block = pattern[index]
        mixer = empty_mixer
        if block in _HYBRID_MIXERS:
            mixer = mamba if block == "M" and mamba is not None else attention
            index += 1
        mlp = empty_mlp
        norms = hidden if mixer is not empty_mixer else 0
        if index < len(pattern) and pattern[index] in _HYBRID_MLPS:
            chosen = moe if pattern[index] == "E" else dense
            assert chosen is not None
            mlp = chosen
            norms += hidden
            index += 1
        result.append(LayerSpec(mixer, mlp, norms))
    assumptions.append(
        f"hybrid_override_pattern: {len(pattern)} blocks read as {len(result)} layers "
        "(each mixer paired with the MLP block after it)"
    )
    return tuple(result)


def _attention_kinds(
    config: Mapping[str, Any],
    layers: int,
    model_type: str,
    source: str,
    assumptions: MutableSequence[str],
) -> list[tuple[AttentionKind, int]]:
    """(kind, window) of every layer, from layer_types or the family's pattern fields."""
    window = _int(config, "sliding_window", source) or 0
    chunk = _int(config, "attention_chunk_size", source) or 0
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            raise ArchitectureError(
                f"{source}: layer_types must be a list of {layers} entries (num_hidden_layers)"
            )
        kinds: list[tuple[AttentionKind, int]] = []
        for index, entry in enumerate(layer_types):
            if entry == "full_attention":
                kinds.append(("full", 0))
            elif entry == "sliding_attention":
                if not window:
                    raise ArchitectureError(
                        f"{source}: layer_types names sliding_attention but sliding_window "
                        "is missing"
                    )
                kinds.append(("sliding", window))
            elif entry == "chunked_attention":
                if not chunk:
                    raise ArchitectureError(
                        f"{source}: layer_types names chunked_attention but "
                        "attention_chunk_size is missing"
                    )
                kinds.append(("chunked", chunk))
            elif entry == "linear_attention":
                kinds.append(("linear", 0))
            else:
                assumptions.append(
                    f"layer_types[{index}] {entry!r} not understood: counted as full attention"
                )
                kinds.append(("full", 0))
        return kinds
    interval = _int(config, "full_attention_interval", source)
    if interval or model_type == "qwen3_next":
        interval = interval or 4
        return [("full", 0) if (i + 1) % interval == 0 else ("linear", 0) for i in range(layers)]
    if chunk:
        # Llama 4: RoPE layers use chunked local attention, the NoPE layers (every 4th) full.
        no_rope = _int_list(config, "no_rope_layers", source)
        if not no_rope:
            step = _int(config, "no_rope_layer_interval", source) or 4
            no_rope = [int((i + 1) % step != 0) for i in range(layers)]
        if len(no_rope) != layers:
            raise ArchitectureError(f"{source}: no_rope_layers must have {layers} entries")
        return [("chunked", chunk) if flag else ("full", 0) for flag in no_rope]
    pattern = _int(config, "sliding_window_pattern", source)
    if model_type in ("gemma3", "gemma3_text") and pattern is None:
        pattern = 6
        assumptions.append(
            "sliding_window_pattern: absent; took gemma3_text's default 6 "
            "(5 sliding layers, then a global one)"
        )
    if pattern and window:
        return [
            ("full", 0) if (i + 1) % pattern == 0 else ("sliding", window) for i in range(layers)
        ]
    if model_type == "gemma2" and window:
        return [("sliding", window) if i % 2 == 0 else ("full", 0) for i in range(layers)]
    if window and config.get("use_sliding_window") is not False:
        first = _int(config, "max_window_layers", source) if config.get("use_sliding_window") else 0
        return [("sliding", window) if i >= (first or 0) else ("full", 0) for i in range(layers)]
    return [("full", 0)] * layers


def _moe_layer_flags(
    config: Mapping[str, Any], layers: int, experts: int, source: str
) -> list[bool]:
    """Which layers run MoE: dense-first (DeepSeek), sparse step (Qwen), interleave (Llama 4)."""
    if not experts:
        return [False] * layers
    listed = _int_list(config, "moe_layers", source)
    if listed is not None:
        return [i in set(listed) for i in range(layers)]
    first_dense = _int(config, "first_k_dense_replace", source) or 0
    freq_raw = config.get("moe_layer_freq", 1)
    if isinstance(freq_raw, bool) or not isinstance(freq_raw, int) or freq_raw < 1:
        raise ArchitectureError(
            f"{source}: moe_layer_freq must be a positive integer, got {freq_raw!r}"
        )
    step = _int(config, "decoder_sparse_step", source) or 1
    interleave = _int(config, "interleave_moe_layer_step", source) or 1
    mlp_only = set(_int_list(config, "mlp_only_layers", source) or [])
    return [
        i >= first_dense
        and i % freq_raw == 0
        and (i + 1) % step == 0
        and (i + 1) % interleave == 0
        and i not in mlp_only
        for i in range(layers)
    ]


_QK_NORM_TYPES = ("qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text", "olmo2")


def _mlps(config: Mapping[str, Any], layers: int, model_type: str, source: str) -> list[MlpSpec]:
    """Every layer's MLP: dense, or routed experts (top-k) plus shared experts."""
    experts = (
        _int(config, "num_local_experts", source)
        or _int(config, "num_experts", source)
        or _int(config, "n_routed_experts", source)
        or 0
    )
    top_k = (
        _int(config, "num_experts_per_tok", source)
        or _int(config, "experts_per_token", source)
        or _int(config, "moe_topk", source)
    )
    if experts and not top_k:
        raise ArchitectureError(f"{source}: missing num_experts_per_tok for {experts} experts")
    if experts and top_k and top_k > experts:
        raise ArchitectureError(f"{source}: num_experts_per_tok {top_k} exceeds {experts} experts")
    moe_flags = _moe_layer_flags(config, layers, experts, source)
    # Llama 4 names the dense MLP's width intermediate_size_mlp and the expert's intermediate_size.
    dense_size = _int(config, "intermediate_size_mlp", source) or _int(
        config, "intermediate_size", source
    )
    expert_size = _int(config, "moe_intermediate_size", source) or _int(
        config, "intermediate_size", source
    )
    if not all(moe_flags) and not dense_size:
        raise ArchitectureError(f"{source}: missing intermediate_size")
    if not any(moe_flags):
        assert dense_size
        return [MlpSpec("dense", dense_size)] * layers
    if not expert_size:
        raise ArchitectureError(f"{source}: missing moe_intermediate_size")
    assert top_k
    # Shared experts: Qwen2-MoE / Qwen3-Next give their width (and gate them), DeepSeek their
    # count of expert-wide MLPs, Llama 4 always has one of the expert's width.
    shared = _int(config, "shared_expert_intermediate_size", source) or 0
    n_shared = _int(config, "n_shared_experts", source) or 0
    if n_shared:
        shared = n_shared * expert_size
    if model_type in ("llama4", "llama4_text"):
        shared = expert_size
    router_vector = 0
    if model_type == "gpt_oss":
        router_vector = experts  # the router has a bias
    elif config.get("topk_method") == "noaux_tc" or config.get("use_routing_bias"):
        router_vector = experts  # DeepSeek-V3, MiniMax-M2: e_score_correction_bias
    moe = MlpSpec(
        "moe",
        expert_size,
        num_experts=experts,
        experts_per_token=top_k,
        shared_intermediate_size=shared,
        expert_bias=model_type == "gpt_oss",
        router_vector_params=router_vector,
        shared_gate=bool(config.get("shared_expert_intermediate_size")),
    )
    dense = MlpSpec("dense", dense_size) if dense_size else moe
    return [moe if flag else dense for flag in moe_flags]


def _attentions(
    config: Mapping[str, Any],
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    model_type: str,
    source: str,
    assumptions: MutableSequence[str],
) -> list[AttentionSpec]:
    """Every layer's attention: MLA for all layers of an MLA model, else by layer kind."""
    kinds = _attention_kinds(config, layers, model_type, source, assumptions)
    if config.get("kv_lora_rank"):
        return [_mla_attention(config, hidden, heads, source)] * layers
    linear = None
    if any(kind == "linear" for kind, _ in kinds):
        linear = _linear_attention(config, hidden, source, assumptions)
    bias = bool(config.get("attention_bias", model_type in ("qwen2", "qwen2_moe")))
    result: list[AttentionSpec] = []
    for kind, window in kinds:
        if kind == "linear":
            assert linear is not None
            result.append(linear)
            continue
        result.append(
            standard_attention(
                kind=kind,
                hidden=hidden,
                heads=heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
                qkv_bias=bias,
                # Qwen2 biases q, k, v only; Llama and gpt-oss with attention_bias o as well.
                o_bias=bias and model_type not in ("qwen2", "qwen2_moe"),
                qk_norm=model_type in _QK_NORM_TYPES,
                output_gate=model_type == "qwen3_next" or bool(config.get("attn_output_gate")),
                sinks=model_type == "gpt_oss",
                window_tokens=window,
            )
        )
    return result


def read_layers(
    config: Mapping[str, Any],
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    source: str,
    assumptions: MutableSequence[str],
) -> tuple[LayerSpec, ...]:
    """The layers of a text config (a multimodal wrapper's `text_config` merged in first)."""
    model_type = str(config.get("model_type", ""))
    if config.get("hybrid_override_pattern") is not None:
        return _hybrid_layers(
            config,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            model_type=model_type,
            source=source,
            assumptions=assumptions,
        )
    mlps = _mlps(config, layers, model_type, source)
    attentions = _attentions(
        config,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        model_type=model_type,
        source=source,
        assumptions=assumptions,
    )
    norms = (4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2) * hidden
    return tuple(
        LayerSpec(attention, mlp, norms) for attention, mlp in zip(attentions, mlps, strict=True)
    )


# --- a one-line description ---------------------------------------------------------------------


def describe(model: ModelSpec) -> str:
    """What the engine read, in one line: MLP, layers, attention and weight format, e.g.
    "MoE, 256 routed experts top-8 + 1 shared, 61 layers (3 dense first), MLA (kv_lora_rank
    512 + rope 64), fp8 block weights" (shown on a deployment's page next to its assumptions).
    """
    layers = model.layers
    moe = [layer.mlp for layer in layers if layer.mlp.kind == "moe"]
    parts: list[str] = []
    if moe:
        mlp = moe[0]
        text = f"MoE, {mlp.num_experts} routed experts top-{mlp.experts_per_token}"
        shared = mlp.shared_intermediate_size
        if shared and shared % mlp.intermediate_size == 0:
            text += f" + {shared // mlp.intermediate_size} shared"
        elif shared:
            text += f" + a shared expert ({shared} wide)"
        parts.append(text)
    else:
        parts.append("dense")
    dense = [
        i for i, layer in enumerate(layers)
        if layer.mlp.kind == "dense" and layer.mlp.intermediate_size
    ]  # fmt: skip
    bare = sum(
        1 for layer in layers if layer.mlp.kind == "dense" and not layer.mlp.intermediate_size
    )
    count = f"{len(layers)} layers"
    if moe and dense:
        first = dense == list(range(len(dense)))
        count += f" ({len(dense)} dense{' first' if first else ''})"
    if bare:
        count += f" ({bare} without an MLP)"
    parts.append(count)
    parts.append(_describe_attention(layers))
    parts.append(_describe_weights(model))
    return ", ".join(parts)


def _describe_attention(layers: tuple[LayerSpec, ...]) -> str:
    kinds: dict[str, int] = {}
    for layer in layers:
        kinds[layer.attention.kind] = kinds.get(layer.attention.kind, 0) + 1
    first = {layer.attention.kind: layer.attention for layer in reversed(layers)}
    if "mla" in first:
        mla = first["mla"]
        # The latent's split is not kept apart: absorbed decode scores over latent + rope and
        # sums values over the latent, so decode FLOPs per pair / (2 heads) = 2 latent + rope.
        latent = mla.decode_flops_per_pair // (2 * mla.num_heads) - mla.kv_elements_per_token
        rope = mla.kv_elements_per_token - latent
        text = f"MLA (kv_lora_rank {latent} + rope {rope})"
        return text + (f", sparse top-{mla.sparse_topk}" if mla.sparse_topk else "")
    shown: list[str] = []
    for kind in ("full", "sliding", "chunked", "linear"):
        if kind not in first:
            continue
        attention = first[kind]
        where = "" if len(kinds) == 1 else f" on {kinds[kind]} layers"
        if kind == "linear":
            shown.append(f"linear{where}")
            continue
        label = {"full": "full", "sliding": "sliding window", "chunked": "chunked local"}[kind]
        if kind != "full":
            label += f" {attention.window_tokens}"
        shown.append(f"{label}{where}")
    head = next((layer.attention for layer in layers if layer.attention.kind != "linear"), None)
    text = " + ".join(shown)
    text = f"{text} attention" if len(kinds) == 1 else f"attention: {text}"
    if head is None:
        return text
    grouping = (
        f"{head.num_heads} heads"
        if head.num_heads == head.num_kv_heads
        else f"GQA {head.num_heads}/{head.num_kv_heads} heads"
    )
    return f"{text} ({grouping} x {head.qk_head_dim})"


def _describe_weights(model: ModelSpec) -> str:
    fmt = model.weight_format
    if fmt is None:
        return "16-bit weights (or the deployment's quantization)"
    scheme = fmt.scheme.replace("-", " ")
    if fmt.groups == {"attention", "dense_mlp", "experts", "shared_experts"}:
        return f"{scheme} weights"
    return f"{scheme} {' and '.join(sorted(fmt.groups))} (rest 16-bit)"
