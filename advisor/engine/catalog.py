"""Catalog: hardware (GPUs and the CPU dev node), model architectures and quantization schemes.

Every figure carries its source and date. `Catalog` is an immutable registry: look things up
with `gpu()`, `model()`, `quant()` (case-insensitive, with aliases), and derive a user's own
catalog with `with_gpu()`, `with_model()`, `with_price()`. `DEFAULT_CATALOG` holds the
built-in tables. Unknown names raise `CatalogError` naming the field and the known names.

Models come from a Hugging Face `config.json` (`model_from_hf_config(path)` does the file read,
`model_from_hf_dict` is pure) or from the built-in table (every model in PERF_MODEL.md).
Parameter counts are computed from the architecture (the same arithmetic for both) and match
the published totals to within 0.5%.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

GIB = 1024**3
MIB = 1024**2
TERA = 1e12

ComputeKind = Literal["bf16", "fp8", "int8"]
HardwareKind = Literal["gpu", "cpu"]


class CatalogError(ValueError):
    """Unknown or inconsistent catalog entry; the message names the field."""


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator (per device figures; dense tensor-core peaks, no 2:4 sparsity)."""

    name: str
    kind: HardwareKind
    memory_bytes: int
    bandwidth_bytes_per_s: float
    bf16_flops_per_s: float
    fp8_flops_per_s: float | None  # None: no FP8 tensor cores (FP8 weights run as W8A16)
    int8_ops_per_s: float | None
    link_bytes_per_s: float  # one direction, per device, for tensor-parallel all-reduce
    price_usd_per_hour: float  # per device
    spec_source: str
    price_source: str
    aliases: tuple[str, ...] = ()

    def peak_flops_per_s(self, compute: ComputeKind) -> float:
        """Peak for a compute kind, falling back to BF16 where the hardware lacks it."""
        if compute == "fp8" and self.fp8_flops_per_s:
            return self.fp8_flops_per_s
        if compute == "int8" and self.int8_ops_per_s:
            return self.int8_ops_per_s
        return self.bf16_flops_per_s


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer architecture (from its Hugging Face config.json)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # per expert for MoE
    vocab_size: int
    tie_word_embeddings: bool = False
    num_experts: int = 1  # 1: dense
    experts_per_token: int = 1
    attention_bias: bool = False
    max_position_embeddings: int = 8192
    source: str = ""
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "num_experts",
            "experts_per_token",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CatalogError(f"model {self.name}: {name} must be an integer >= 1")
        if self.num_heads % self.num_kv_heads:
            raise CatalogError(f"model {self.name}: num_heads must be a multiple of num_kv_heads")
        if self.experts_per_token > self.num_experts:
            raise CatalogError(f"model {self.name}: experts_per_token > num_experts")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Output projection (shared with the embedding when tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def attention_params_per_layer(self) -> int:
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        params = self.hidden_size * (q_out + 2 * kv_out) + q_out * self.hidden_size
        if self.attention_bias:
            params += q_out + 2 * kv_out
        return params + 2 * self.hidden_size  # two RMSNorm weights per layer

    @property
    def expert_params(self) -> int:
        """One gated MLP (gate, up, down)."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts if self.is_moe else 0

    @property
    def total_params(self) -> int:
        per_layer = (
            self.attention_params_per_layer
            + self.num_experts * self.expert_params
            + self.router_params_per_layer
        )
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.num_layers * per_layer + self.embedding_params + head + self.hidden_size

    @property
    def active_params(self) -> int:
        """Parameters a token passes through (MoE: only its top-k experts)."""
        per_layer = (
            self.attention_params_per_layer
            + self.experts_per_token * self.expert_params
            + self.router_params_per_layer
        )
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.num_layers * per_layer + self.embedding_params + head + self.hidden_size

    @property
    def matmul_params_per_token(self) -> int:
        """Parameters in matrix multiplies per token: active params minus the embedding lookup."""
        return (
            self.active_params
            - self.embedding_params
            + (self.lm_head_params if self.tie_word_embeddings else 0)
        )

    def kv_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """2 (K and V) x layers x kv heads x head_dim x bytes per element."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bytes_per_element


@dataclass(frozen=True)
class QuantScheme:
    """How weights are stored and which compute peak applies.

    `weight_bits` counts scales and zero points (e.g. AWQ group 128: 4 + 16/128 + 4/128).
    `quantizes_embeddings`: whether the embedding and LM head are quantized too (they are not
    for AWQ/GPTQ/FP8 checkpoints served by vLLM; GGUF quantizes them).
    `quality_delta_points`: accuracy change vs BF16 (MMLU points, negative = worse).
    """

    name: str
    weight_bits: float
    compute: ComputeKind
    quantizes_embeddings: bool
    vllm_quantization: str | None
    quality_delta_points: float
    quality_source: str
    aliases: tuple[str, ...] = ()

    @property
    def weight_bytes_per_param(self) -> float:
        return self.weight_bits / 8.0


KV_DTYPE_BYTES: Mapping[str, float] = MappingProxyType(
    {"bf16": 2.0, "fp16": 2.0, "auto": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
)


def kv_dtype_bytes(kv_dtype: str) -> float:
    """Bytes per KV element for a vLLM `--kv-cache-dtype` value (auto = the model's BF16)."""
    key = kv_dtype.strip().lower()
    if key not in KV_DTYPE_BYTES:
        raise CatalogError(f"kv_dtype: unknown {kv_dtype!r}; known: {sorted(KV_DTYPE_BYTES)}")
    return KV_DTYPE_BYTES[key]


# --- built-in tables -------------------------------------------------------------------------

_NV = "NVIDIA datasheet (dense tensor-core peaks), as summarised in PERF_MODEL.md, 2025"
_AWS_CB = "AWS EC2 Capacity Blocks rate per GPU-hour, 2025-01-01 (PERF_MODEL.md)"
_RUNPOD = "RunPod serverless per GPU-hour, 2025 (PERF_MODEL.md)"
_UNVERIFIED = "public on-demand list price recalled for 2025, not checked here: edit the sheet"

GPUS: tuple[HardwareSpec, ...] = (
    HardwareSpec(
        "A100-40GB", "gpu", 40960 * MIB, 1.555e12, 312 * TERA, None, 624 * TERA, 300e9,
        14.75 / 8, _NV + "; NVLink3 600 GB/s bidirectional", _AWS_CB + " (p4d 8xA100-40GB)",
        ("a100-40gb-sxm", "a100-sxm4-40gb"),
    ),
    HardwareSpec(
        "A100-80GB", "gpu", 81920 * MIB, 2.039e12, 312 * TERA, None, 624 * TERA, 300e9,
        2.74, _NV + "; NVLink3 600 GB/s bidirectional", _RUNPOD,
        ("a100", "a100-80gb-sxm", "a100-sxm4-80gb", "a100 80gb sxm"),
    ),
    HardwareSpec(
        "H100-SXM", "gpu", 81559 * MIB, 3.35e12, 989 * TERA, 1979 * TERA, 1979 * TERA, 450e9,
        39.33 / 8, _NV + "; NVLink4 900 GB/s bidirectional", _AWS_CB + " (p5 8xH100)",
        ("h100", "h100-80gb", "h100-sxm5", "h100 sxm", "h100-80gb-hbm3"),
    ),
    HardwareSpec(
        "H100-PCIe", "gpu", 81559 * MIB, 2.0e12, 756 * TERA, 1513 * TERA, 1513 * TERA, 64e9,
        2.49, "NVIDIA H100 PCIe datasheet (dense), 2023; PCIe Gen5 x16", _UNVERIFIED,
        ("h100-pcie-80gb", "h100 pcie"),
    ),
    HardwareSpec(
        "H200-SXM", "gpu", 143771 * MIB, 4.8e12, 989 * TERA, 1979 * TERA, 1979 * TERA, 450e9,
        43.26 / 8, _NV + "; NVLink4 900 GB/s bidirectional", _AWS_CB + " (p5e 8xH200)",
        ("h200", "h200-141gb"),
    ),
    HardwareSpec(
        "L4", "gpu", 23034 * MIB, 300e9, 121 * TERA, 242 * TERA, 242 * TERA, 32e9,
        0.68, _NV + "; PCIe Gen4 x16", _RUNPOD, ("l4-24gb",),
    ),
    HardwareSpec(
        "L40S", "gpu", 46068 * MIB, 864e9, 362 * TERA, 733 * TERA, 733 * TERA, 32e9,
        1.91, _NV + "; PCIe Gen4 x16", _RUNPOD, ("l40s-48gb",),
    ),
    HardwareSpec(
        "A10G", "gpu", 23028 * MIB, 600e9, 125 * TERA, None, 250 * TERA, 32e9,
        1.006, "NVIDIA A10 datasheet 2021 (A10G is AWS's A10 variant, clocks may be lower)",
        "AWS g5.xlarge on-demand us-east-1, 2025 (not checked here: edit the sheet)",
        ("a10", "a10g-24gb"),
    ),
    HardwareSpec(
        "B200", "gpu", 183359 * MIB, 7.7e12, 2250 * TERA, 4500 * TERA, 4500 * TERA, 900e9,
        4.99, _NV + "; NVLink5 1.8 TB/s bidirectional", _UNVERIFIED, ("b200-180gb",),
    ),
    # The project's real vLLM CPU node (2 vCPU Sapphire Rapids VM, AMX): peaks are nominal
    # (2 cores x 1024 BF16 FLOP/cycle x 2.0 GHz); the calibration profile carries the truth.
    # Memory is the KV space vLLM is given (VLLM_CPU_KVCACHE_SPACE=1 GiB) plus the weights.
    HardwareSpec(
        "CPU-DEV-2C", "cpu", 24 * GIB, 20e9, 4.1 * TERA, None, 8.2 * TERA, 20e9,
        0.10, "Intel AMX nominal peak; this project's 2-vCPU dev/CI machine",
        "nominal VM price for cost figures only", ("cpu", "cpu-dev", "vllm-cpu"),
    ),
)  # fmt: skip

_HF = "Hugging Face config.json (PERF_MODEL.md table)"

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "Llama-3-8B", 32, 4096, 32, 8, 128, 14336, 128256, source=_HF,
        aliases=("llama-3.1-8b", "meta-llama-3-8b", "meta-llama-3.1-8b", "llama3-8b",
                 "llama-3-8b-instruct", "llama-3.1-8b-instruct"),
    ),
    ModelSpec(
        "Llama-3-70B", 80, 8192, 64, 8, 128, 28672, 128256, source=_HF,
        aliases=("llama-3.1-70b", "llama-3.3-70b", "meta-llama-3-70b", "llama-3-70b-instruct",
                 "llama-3.1-70b-instruct", "llama-3.3-70b-instruct"),
    ),
    ModelSpec(
        "Llama-2-7B", 32, 4096, 32, 32, 128, 11008, 32000, max_position_embeddings=4096,
        source=_HF, aliases=("llama-2-7b-chat", "llama2-7b"),
    ),
    ModelSpec(
        "Llama-2-70B", 80, 8192, 64, 8, 128, 28672, 32000, max_position_embeddings=4096,
        source=_HF, aliases=("llama-2-70b-chat", "llama2-70b"),
    ),
    ModelSpec(
        "Qwen2.5-7B", 28, 3584, 28, 4, 128, 18944, 152064, attention_bias=True,
        max_position_embeddings=32768, source=_HF, aliases=("qwen2.5-7b-instruct",),
    ),
    ModelSpec(
        "Qwen2.5-72B", 80, 8192, 64, 8, 128, 29568, 152064, attention_bias=True,
        max_position_embeddings=32768, source=_HF, aliases=("qwen2.5-72b-instruct",),
    ),
    ModelSpec(
        "Mixtral-8x7B", 32, 4096, 32, 8, 128, 14336, 32000, num_experts=8, experts_per_token=2,
        max_position_embeddings=32768, source=_HF,
        aliases=("mixtral-8x7b-v0.1", "mixtral-8x7b-instruct-v0.1"),
    ),
    ModelSpec(
        "Llama-3.1-405B", 126, 16384, 128, 8, 128, 53248, 128256,
        max_position_embeddings=131072, source=_HF, aliases=("llama-3.1-405b-instruct",),
    ),
    # The random-weight model the project's real vLLM CPU node serves (tests/support/tiny_model.py).
    ModelSpec(
        "tiny-llama", 2, 256, 4, 2, 64, 512, 507, max_position_embeddings=2048,
        source="tests/support/tiny_model.py (LlamaConfig; vocab 507 as trained)",
    ),
)  # fmt: skip

_QWEN_MMLU = "Qwen docs, MMLU of Qwen2-72B-Instruct (PERF_MODEL.md)"
_BF16_OR_DEATH = "Kurtic et al., 'Give Me BF16 or Give Me Death', ACL 2025 (PERF_MODEL.md)"

SCHEMES: tuple[QuantScheme, ...] = (
    QuantScheme("bf16", 16.0, "bf16", True, None, 0.0, "reference", ("bfloat16", "auto")),
    QuantScheme("fp16", 16.0, "bf16", True, None, 0.0, "reference", ("float16", "half")),
    QuantScheme(
        "fp8", 8.0, "fp8", False, "fp8", 0.0, _BF16_OR_DEATH + ": FP8 W8A8 essentially lossless",
        ("fp8-w8a8", "fp8_e4m3"),
    ),
    QuantScheme(
        "int8", 8.0, "int8", False, "compressed-tensors", -1.0,
        _QWEN_MMLU + " (Int8 -1.0); " + _BF16_OR_DEATH + ": INT8 W8A8 1-3% loss",
        ("int8-w8a8", "w8a8"),
    ),
    QuantScheme(
        "awq-int4", 4.0 + 16 / 128 + 4 / 128, "bf16", False, "awq_marlin", -1.8,
        _QWEN_MMLU + " (AWQ 80.5 vs 82.3)", ("awq", "awq-4bit", "int4-awq"),
    ),
    QuantScheme(
        "gptq-int4", 4.0 + 16 / 128 + 4 / 128, "bf16", False, "gptq_marlin", -1.5,
        _QWEN_MMLU + " (GPTQ-Int4 80.8 vs 82.3)", ("gptq", "gptq-4bit", "int4-gptq"),
    ),
    QuantScheme(
        "gptq-int8", 8.0 + 16 / 128 + 8 / 128, "bf16", False, "gptq_marlin", -1.0,
        _QWEN_MMLU + " (GPTQ-Int8 81.3 vs 82.3)", ("gptq-8bit", "int8-gptq"),
    ),
    QuantScheme(
        "gguf-q4_k_m", 4.85, "bf16", True, None, -1.8,
        "llama.cpp quantize table (Q4_K_M ~4.85 bits/weight); quality as AWQ int4 (assumption)",
        ("q4_k_m", "gguf-q4km"),
    ),
    QuantScheme(
        "gguf-q8_0", 8.5, "bf16", True, None, -0.3,
        "llama.cpp (Q8_0: 32-weight blocks with an fp16 scale = 8.5 bits); near lossless",
        ("q8_0", "gguf-q8"),
    ),
)  # fmt: skip


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _index(entries: tuple[Any, ...], kind: str) -> Mapping[str, Any]:
    index: dict[str, Any] = {}
    for entry in entries:
        for alias in (entry.name, *entry.aliases):
            key = _key(alias)
            if key in index and index[key] is not entry:
                raise CatalogError(f"{kind}: alias {alias!r} names two entries")
            index[key] = entry
    return MappingProxyType(index)


@dataclass(frozen=True)
class Catalog:
    """An immutable set of hardware, models and schemes; derive variants with `with_*`."""

    gpus: tuple[HardwareSpec, ...] = GPUS
    models: tuple[ModelSpec, ...] = MODELS
    schemes: tuple[QuantScheme, ...] = SCHEMES
    _gpu_index: Mapping[str, HardwareSpec] = field(init=False, repr=False, compare=False)
    _model_index: Mapping[str, ModelSpec] = field(init=False, repr=False, compare=False)
    _scheme_index: Mapping[str, QuantScheme] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_gpu_index", _index(self.gpus, "gpu"))
        object.__setattr__(self, "_model_index", _index(self.models, "model"))
        object.__setattr__(self, "_scheme_index", _index(self.schemes, "weight_dtype"))

    def gpu(self, name: str) -> HardwareSpec:
        found = self._gpu_index.get(_key(name))
        if found is None:
            known = ", ".join(spec.name for spec in self.gpus)
            raise CatalogError(f"gpu: unknown {name!r}; known: {known}")
        return found

    def model(self, name: str) -> ModelSpec:
        """A built-in model by name (an org prefix such as `meta-llama/` is ignored)."""
        found = self._model_index.get(_key(name.split("/")[-1]))
        if found is None:
            known = ", ".join(spec.name for spec in self.models)
            raise CatalogError(
                f"model: unknown {name!r}; known: {known} (or pass a config.json path)"
            )
        return found

    def quant(self, name: str) -> QuantScheme:
        found = self._scheme_index.get(_key(name))
        if found is None:
            known = ", ".join(scheme.name for scheme in self.schemes)
            raise CatalogError(f"weight_dtype: unknown {name!r}; known: {known}")
        return found

    def with_gpu(self, spec: HardwareSpec) -> Catalog:
        """A catalog where `spec` replaces the GPU of the same name, or is added."""
        rest = tuple(gpu for gpu in self.gpus if _key(gpu.name) != _key(spec.name))
        return replace(self, gpus=(*rest, spec))

    def with_model(self, spec: ModelSpec) -> Catalog:
        rest = tuple(model for model in self.models if _key(model.name) != _key(spec.name))
        return replace(self, models=(*rest, spec))

    def with_price(self, gpu_name: str, price_usd_per_hour: float, source: str) -> Catalog:
        if not (price_usd_per_hour >= 0 and math.isfinite(price_usd_per_hour)):
            raise CatalogError(f"price_usd_per_hour: must be >= 0, got {price_usd_per_hour}")
        spec = self.gpu(gpu_name)
        return self.with_gpu(
            replace(spec, price_usd_per_hour=price_usd_per_hour, price_source=source)
        )


DEFAULT_CATALOG = Catalog()


def _int_field(config: Mapping[str, Any], names: tuple[str, ...], source: str) -> int | None:
    for name in names:
        if name in config and config[name] is not None:
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CatalogError(f"{source}: {name} must be a positive integer, got {value!r}")
            return value
    return None


def model_from_hf_dict(config: Mapping[str, Any], *, name: str) -> ModelSpec:
    """A `ModelSpec` from a parsed Hugging Face config (Llama, Qwen2, Mistral, Mixtral, Qwen MoE).

    Multimodal wrappers with a `text_config` are read from it. Missing required fields raise
    `CatalogError` naming the field.
    """
    source = f"config.json of {name}"
    text = config.get("text_config")
    if isinstance(text, Mapping):
        config = {**config, **text}

    def need(*names: str) -> int:
        value = _int_field(config, names, source)
        if value is None:
            raise CatalogError(f"{source}: missing {names[0]}")
        return value

    hidden = need("hidden_size", "n_embd", "d_model")
    heads = need("num_attention_heads", "n_head")
    kv_heads = _int_field(config, ("num_key_value_heads",), source) or heads
    head_dim = _int_field(config, ("head_dim",), source) or hidden // heads
    experts = _int_field(config, ("num_local_experts", "num_experts", "n_routed_experts"), source)
    top_k = _int_field(config, ("num_experts_per_tok", "moe_topk"), source)
    moe_size = _int_field(config, ("moe_intermediate_size",), source)
    intermediate = moe_size if experts and moe_size else need("intermediate_size", "n_inner")
    return ModelSpec(
        name=name,
        num_layers=need("num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=need("vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        num_experts=experts or 1,
        experts_per_token=top_k or 1 if experts else 1,
        attention_bias=bool(
            config.get("attention_bias", config.get("model_type") in ("qwen2", "qwen2_moe"))
        ),
        max_position_embeddings=_int_field(config, ("max_position_embeddings",), source) or 8192,
        source=source,
    )


def model_from_hf_config(path: str | Path) -> ModelSpec:
    """Read a Hugging Face `config.json` (or a model directory holding one)."""
    config_path = Path(path)
    if config_path.is_dir():
        config_path = config_path / "config.json"
    try:
        parsed = json.loads(config_path.read_text())
    except FileNotFoundError as exc:
        raise CatalogError(f"model: no config.json at {config_path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"model: {config_path} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CatalogError(f"model: {config_path} must hold a JSON object")
    name = config_path.parent.name or config_path.stem
    return model_from_hf_dict(parsed, name=name)


def resolve_model(name_or_path: str, catalog: Catalog = DEFAULT_CATALOG) -> ModelSpec:
    """A built-in model name, or a path to a config.json / model directory."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or (candidate.is_dir() and (candidate / "config.json").exists()):
        return model_from_hf_config(candidate)
    return catalog.model(name_or_path)
