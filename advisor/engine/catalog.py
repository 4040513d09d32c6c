"""Catalog: hardware (GPUs and the CPU dev node), model architectures and quantization schemes.

Every figure carries its source and date. `Catalog` is an immutable registry: look things up
with `gpu()`, `model()`, `quant()` (case-insensitive, with aliases), and derive a user's own
catalog with `with_gpu()`, `with_model()`, `with_price()`. `DEFAULT_CATALOG` holds the
built-in tables. Unknown names raise `CatalogError` naming the field and the known names.

Models come from a Hugging Face `config.json` (`model_from_hf_config(path)` does the file read,
`model_from_hf_dict` is pure), from the built-in table (every model in PERF_MODEL.md), or from
the config.json files vendored in `data/configs/` (`model()` finds them by name when no built-in
model matches). A config is read layer by layer (`advisor.engine.architecture`) with its
checkpoint's `quantization_config` (`advisor.engine.weight_format`); what the reader does not
understand is listed in `ModelSpec.assumptions`. Parameter counts are computed from the
architecture (the same arithmetic for all) and match the published totals to within 0.5% for
the built-in models and the text models of the vendored configs (2% where the published figure
includes a vision encoder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from advisor.engine.architecture import (
    GROUPS,
    ArchitectureError,
    GroupParams,
    LayerSpec,
    MlpSpec,
    read_layers,
    standard_attention,
)
from advisor.engine.weight_format import (
    ComputeKind,
    WeightFormat,
    layer_modules,
    read_weight_format,
)

GIB = 1024**3
MIB = 1024**2
TERA = 1e12

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
    """A decoder-only transformer architecture (from its Hugging Face config.json).

    The scalar fields describe a uniform model (every layer full attention, the same MLP);
    a model read from a config.json also carries `layer_structure` (each layer's attention
    and MLP kind, see `advisor.engine.architecture`), its own `weight_format` when the
    checkpoint is quantized, and `assumptions`: what the reader did not understand. Parameter
    counts, KV bytes and attention FLOPs are derived from `layers` either way. A replaced
    scalar field (e.g. `num_layers=1` for a draft head) that no longer matches the structure
    falls back to the uniform layers the scalars describe.
    """

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
    layer_structure: tuple[LayerSpec, ...] | None = None
    weight_format: WeightFormat | None = None
    assumptions: tuple[str, ...] = ()

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

    @cached_property
    def layers(self) -> tuple[LayerSpec, ...]:
        """Every layer's attention and MLP (the config's structure, or uniform from the scalars)."""
        structure = self.layer_structure
        if structure is not None and len(structure) == self.num_layers:
            moe = [layer.mlp for layer in structure if layer.mlp.kind == "moe"]
            if (moe[0].num_experts if moe else 1) == self.num_experts:
                return structure
        attention = standard_attention(
            kind="full",
            hidden=self.hidden_size,
            heads=self.num_heads,
            kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            qkv_bias=self.attention_bias,
        )
        if self.is_moe_scalar:
            mlp = MlpSpec(
                "moe",
                self.intermediate_size,
                num_experts=self.num_experts,
                experts_per_token=self.experts_per_token,
            )
        else:
            mlp = MlpSpec("dense", self.intermediate_size)
        return (LayerSpec(attention, mlp, 2 * self.hidden_size),) * self.num_layers

    @property
    def is_moe_scalar(self) -> bool:
        return self.num_experts > 1

    @property
    def is_moe(self) -> bool:
        return any(layer.mlp.kind == "moe" for layer in self.layers)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Output projection (shared with the embedding when tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def attention_params_per_layer(self) -> int:
        """Attention and norm parameters of the first layer (all layers of a uniform model)."""
        first = self.layers[0]
        return first.attention.params.total + first.norm_params

    @property
    def expert_params(self) -> int:
        """One gated MLP (gate, up, down) of the scalar width."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts if self.is_moe_scalar else 0

    @cached_property
    def group_params(self) -> Mapping[str, GroupParams]:
        """Parameters per tensor group (attention, dense_mlp, experts, ..., embeddings, lm_head)."""
        groups = {name: GroupParams() for name in GROUPS}
        for layer in self.layers:
            groups["attention"] += layer.attention.params
            groups["norms"] += GroupParams(0, layer.norm_params)
            for name, params in layer.mlp.params(self.hidden_size).items():
                groups[name] += params
        groups["norms"] += GroupParams(0, self.hidden_size)  # final norm
        groups["embeddings"] = GroupParams(self.embedding_params)
        groups["lm_head"] = GroupParams(0 if self.tie_word_embeddings else self.lm_head_params)
        return MappingProxyType(groups)

    @property
    def total_params(self) -> int:
        return sum(params.total for params in self.group_params.values())

    @cached_property
    def active_group_params(self) -> Mapping[str, GroupParams]:
        """Parameters per tensor group that one token passes through (MoE: its top-k routed
        experts; shared experts, dense-first layers and routers always)."""
        groups = dict(self.group_params)
        routed = GroupParams()
        for layer in self.layers:
            if layer.mlp.kind == "moe":
                experts = layer.mlp.params(self.hidden_size)["experts"]
                k, e = layer.mlp.experts_per_token, layer.mlp.num_experts
                routed += GroupParams(experts.matrix * k // e, experts.vector * k // e)
        groups["experts"] = routed
        return MappingProxyType(groups)

    @property
    def active_params(self) -> int:
        """Parameters a token passes through (MoE: its top-k routed experts and the shared ones)."""
        return sum(params.total for params in self.active_group_params.values())

    @property
    def matmul_params_per_token(self) -> int:
        """Parameters in matrix multiplies per token: active params minus the embedding lookup."""
        return (
            self.active_params
            - self.embedding_params
            + (self.lm_head_params if self.tie_word_embeddings else 0)
        )

    def kv_bytes_per_token(self, kv_bytes_per_element: float, *, kv_dtype: str = "") -> float:
        """KV bytes each further token adds once the context is long: layers that keep every
        token (full attention, MLA, with a sparse layer's index cache). Uniform models:
        2 x layers x kv heads x head_dim x bytes. With `kv_dtype` (a `--kv-cache-dtype`
        name), a sparse MLA layer that vLLM packs counts its packed record."""
        growing = [
            layer.attention for layer in self.layers if layer.attention.kind in ("full", "mla")
        ]
        total = 0.0
        for attention in growing:
            if kv_dtype and attention.stores_packed(kv_dtype):
                total += attention.packed_kv_bytes_per_token()
            else:
                total += attention.kv_elements_per_token * kv_bytes_per_element
        return total + sum(attention.index_bytes_per_token for attention in growing)

    def kv_bytes_by_kind(
        self, context_tokens: int, kv_bytes_per_element: float
    ) -> dict[str, float]:
        """KV bytes a sequence of `context_tokens` tokens holds, per attention kind (linear:
        its constant state, which does not depend on kv_dtype)."""
        by_kind: dict[str, float] = {}
        for layer in self.layers:
            attention = layer.attention
            held = (
                float(attention.state_bytes_per_sequence)
                if attention.kind == "linear"
                else attention.kv_bytes(context_tokens, kv_bytes_per_element)
            )
            by_kind[attention.kind] = by_kind.get(attention.kind, 0.0) + held
        return by_kind

    def kv_bytes_per_sequence(self, context_tokens: int, kv_bytes_per_element: float) -> float:
        """KV bytes plus linear-attention state one sequence holds at `context_tokens` tokens."""
        return sum(self.kv_bytes_by_kind(context_tokens, kv_bytes_per_element).values())

    @property
    def state_bytes_per_sequence(self) -> int:
        """Linear-attention state one sequence holds, whatever its length."""
        return sum(layer.attention.state_bytes_per_sequence for layer in self.layers)

    def weight_bytes_by_group(self, quant: QuantScheme) -> dict[str, float]:
        """Bytes per tensor group: the checkpoint's own format if it has one, else `quant`.

        With `quant` (no own format) every matrix and vector outside the embeddings is at the
        scheme's bits and the embeddings/LM head at 16 bits unless the scheme quantizes them.
        With the model's own format each layer's groups take the format's bits and vectors,
        embeddings and router stay 16-bit.
        """
        fmt = self.weight_format
        out: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
        if fmt is None:
            body = quant.weight_bytes_per_param
            embed = body if quant.quantizes_embeddings else 2.0
            for name, counted in self.group_params.items():
                per = embed if name in ("embeddings", "lm_head") else body
                out[name] = counted.total * per
            return out
        for index, layer in enumerate(self.layers):
            params = {
                "attention": layer.attention.params,
                "norms": GroupParams(0, layer.norm_params),
            }
            params.update(layer.mlp.params(self.hidden_size))
            for name, group in params.items():
                kind = (
                    "linear_attention"
                    if name == "attention" and layer.attention.kind == "linear"
                    else name
                )
                bits = fmt.bits(name, layer_modules(index, kind))
                out[name] += group.matrix * bits / 8 + group.vector * 2.0
        out["norms"] += self.hidden_size * 2.0
        out["embeddings"] = self.embedding_params * 2.0
        lm_head = self.group_params["lm_head"].matrix
        out["lm_head"] = lm_head * fmt.bits("lm_head", ("lm_head",)) / 8
        return out

    @property
    def compute(self) -> ComputeKind | None:
        """The compute kind of the checkpoint's own format (None: the deployment's scheme)."""
        return self.weight_format.compute if self.weight_format else None


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
    {
        "bf16": 2.0,
        "bfloat16": 2.0,  # vLLM's own spelling (DeepSeek-V3.2's 16-bit opt-out)
        "fp16": 2.0,
        "auto": 2.0,
        "fp8": 1.0,
        "fp8_e4m3": 1.0,
        "fp8_e5m2": 1.0,
        "fp8_ds_mla": 1.0,  # sparse MLA's packed record (see architecture.AttentionSpec)
    }
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
# The GPUs fleets buy now (issue 15). Memory is what the device reports (nvidia-smi / rocm-smi
# total), as for the rows above; AMD's ROCm spec table gives the same sizes in GiB.
_ROCM_SPECS = "https://rocm.docs.amd.com/en/latest/reference/gpu-specs.html (VRAM in GiB)"
_MI300_PEAKS = (
    "AMD ROCm docs, MI300 microarchitecture, table 'Peak-performance capabilities of the MI300X' "
    "(dense matrix FP16/BF16 1307.4, FP8 2614.9, INT8 2614.9 T), "
    "https://rocm.docs.amd.com/en/latest/conceptual/gpu-arch/mi300.html#mi300x-perf-table, 2025"
)
# AMD data sheets list 7 Infinity Fabric links at 128 GB/s peak each (MI300X/MI325X, 32 GT/s
# x16) and 153.6 GB/s (MI355X, 38.4 GT/s x16), both directions together: 64 and 76.8 GB/s one
# way. A fully connected 8-GPU node reaches all 7 links only when all 8 GPUs share the group;
# TP=2 gets one link (64 GB/s), which this per-device figure does not capture.
_XGMI = (
    "7 Infinity Fabric links x {per_link} GB/s one direction "
    "(AMD data sheet: {peak} GB/s peak per link)"
)
_NV_DC = "https://www.nvidia.com/en-us/data-center"

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
    HardwareSpec(
        "MI300X", "gpu", 192 * GIB, 5.3e12, 1307.4 * TERA, 2614.9 * TERA, 2614.9 * TERA,
        7 * 64e9,
        1.85,
        _MI300_PEAKS + "; 192 GiB HBM3 (rocm-smi 206158430208 B; " + _ROCM_SPECS + "), 5.3 TB/s; "
        + _XGMI.format(per_link=64, peak=128)
        + "; https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html",
        _UNVERIFIED + " (Vultr MI300X on-demand $1.85/GPU-h as listed by gpu.blog, 2025)",
        ("mi300x-192gb", "amd instinct mi300x", "mi300x-oam"),
    ),
    HardwareSpec(
        "MI325X", "gpu", 256 * GIB, 6.0e12, 1307.4 * TERA, 2614.9 * TERA, 2614.9 * TERA,
        7 * 64e9,
        2.25,
        "AMD Instinct MI325X product page, 2024-10 "
        "(https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html): "
        "256 GB HBM3E (" + _ROCM_SPECS + ": 256), 6 TB/s, the MI300X's CDNA 3 compute "
        "(FP16/BF16 1307.4, FP8 2614.9, INT8 2614.9 T dense); "
        + _XGMI.format(per_link=64, peak=128),
        _UNVERIFIED + " (MI325X cloud rental quoted at $2.00-2.25/GPU-h, 2025)",
        ("mi325x-256gb", "amd instinct mi325x"),
    ),
    HardwareSpec(
        "MI355X", "gpu", 288 * GIB, 8.0e12, 2516.6 * TERA, 5033.2 * TERA, 5033.2 * TERA,
        7 * 76.8e9,
        3.50,
        "AMD Instinct MI355X product page and data sheet, 2025-06 "
        "(https://www.amd.com/en/products/accelerators/instinct/mi350/mi355x.html): 288 GB HBM3E ("
        + _ROCM_SPECS + ": 288), 8 TB/s; dense FP16/BF16 2.5 PF, FP8 5.0 PF, INT8 5.0 POPS "
        "(256 CUs x 4096/8192 FLOP/clk x 2.4 GHz = 2516.6/5033.2 T; MXFP4 10066.3 T, "
        "no FP4 field); "
        + _XGMI.format(per_link=76.8, peak=153.6),
        _UNVERIFIED + " (placeholder between MI325X and B200 rates; no list price checked)",
        ("mi355x-288gb", "amd instinct mi355x"),
    ),
    HardwareSpec(
        "H20", "gpu", 97871 * MIB, 4.0e12, 148 * TERA, 296 * TERA, 296 * TERA, 450e9,
        1.50,
        "NVIDIA H20 product brief (China-market Hopper, 2024; no public nvidia.com datasheet): "
        "96 GB HBM3 (nvidia-smi 97871 MiB), 4.0 TB/s, dense BF16 148, FP8 296, INT8 296 T; "
        "NVLink4 900 GB/s bidirectional",
        _UNVERIFIED + " (China-region cloud rates; no list price checked)",
        ("h20-96gb", "h20-sxm"),
    ),
    HardwareSpec(
        "H20-3e", "gpu", 143771 * MIB, 4.8e12, 148 * TERA, 296 * TERA, 296 * TERA, 450e9,
        1.80,
        "NVIDIA H20-3e: the H20's compute (dense BF16 148, FP8 296, INT8 296 T) with 141 GB "
        "HBM3e (nvidia-smi 143771 MiB, as H200); 4.8 TB/s taken from the H200's HBM3e, not from "
        "a published NVIDIA figure; NVLink4 900 GB/s bidirectional",
        _UNVERIFIED + " (no list price checked)",
        ("h20-141gb", "h20-3e-141gb"),
    ),
    HardwareSpec(
        "RTX-PRO-6000-SE", "gpu", 97887 * MIB, 1.597e12, 480 * TERA, 960 * TERA, 960 * TERA,
        64e9,
        1.79,
        "NVIDIA RTX PRO 6000 Blackwell Server Edition, " + _NV_DC
        + "/rtx-pro-6000-blackwell-server-edition/ and data sheet 2025-12: 96 GB GDDR7 "
        "(nvidia-smi 97887 MiB), 1597 GB/s, 120 FP32 TFLOPS, 600 W; dense BF16/FP8/INT8 derived "
        "from the FP32 figure with GB202's tensor ratios (4x/8x/8x FP32 = 480/960/960 T; FP4 "
        "1920 T, no FP4 field); PCIe Gen5 x16, no NVLink",
        _UNVERIFIED + " (RTX PRO 6000 on-demand around $1.79/GPU-h, 2025)",
        ("rtx pro 6000 blackwell server edition", "rtx-pro-6000-blackwell-server"),
    ),
    HardwareSpec(
        "B300", "gpu", 275040 * MIB, 8.0e12, 2250 * TERA, 4500 * TERA, None, 900e9,
        6.00,
        "NVIDIA HGX B300 (" + _NV_DC + "/hgx/) and DGX B300 (" + _NV_DC + "/dgx-b300/), 2025: "
        "288 GB HBM3e (nvidia-smi 'NVIDIA B300 SXM6 AC' 275040 MiB), 8 TB/s (64 TB/s per 8 GPUs), "
        "dense BF16 2.25 PF and FP8 4.5 PF (36 and 72 PF sparse per 8 GPUs; NVFP4 13.5 PF dense, "
        "no FP4 field); INT8 tensor rate cut on Blackwell Ultra (0.15-0.32 POPS across NVIDIA "
        "material): left None, so INT8 W8A8 is costed at the BF16 peak, an overestimate; "
        "NVLink5 1.8 TB/s bidirectional",
        _UNVERIFIED + " (no list price checked)",
        ("b300-288gb", "b300-sxm6", "blackwell ultra b300"),
    ),
    HardwareSpec(
        "GB200", "gpu", 189471 * MIB, 8.0e12, 2500 * TERA, 5000 * TERA, 5000 * TERA, 900e9,
        10.50,
        "NVIDIA GB200 NVL72, " + _NV_DC + "/gb200-nvl72/, 2024-2025, per GPU (half a superchip): "
        "186 GB HBM3e (nvidia-smi 189471 MiB), 8 TB/s, dense BF16 2.5 PF, FP8 5 PF, INT8 5 POPS "
        "(10/20/20 sparse per superchip; FP4 10 PF dense, no FP4 field); NVLink5 1.8 TB/s "
        "bidirectional across the 72-GPU domain",
        _UNVERIFIED + " (CoreWeave GB200 NVL72 $42.00 per 4-GPU instance-hour, 2025)",
        ("gb200-186gb", "gb200-nvl72", "gb200 nvl72"),
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
    # Formats checkpoints ship in today (bits per weight with scales, MODEL_ARCH.md).
    QuantScheme(
        "fp8-block", 8 + 32 / (128 * 128), "fp8", False, "fp8", 0.0,
        _BF16_OR_DEATH + ": FP8 W8A8 essentially lossless (128x128 blocks, FP32 scale each)",
        ("fp8-blockwise", "fp8-block-128"),
    ),
    QuantScheme(
        "fp8-per-channel", 8.0, "fp8", False, "compressed-tensors", 0.0,
        _BF16_OR_DEATH + ": FP8 W8A8 essentially lossless (one scale per output channel)",
        ("fp8-channel", "fp8-dynamic"),
    ),
    QuantScheme(
        "w4a16", 4 + 16 / 128, "bf16", False, "compressed-tensors", 0.0,
        "no published figure vs BF16 in PERF_MODEL.md (int4 weights, BF16 scale per 128, "
        "symmetric; for AWQ int4 see awq-int4)",
        ("int4-w4a16", "w4a16-int4", "compressed-tensors-w4a16"),
    ),
    QuantScheme(
        "mxfp4", 4 + 8 / 32, "bf16", False, "mxfp4", 0.0,
        "no published figure vs BF16 (gpt-oss is released only with MXFP4 experts); "
        "compute at the BF16 peak: Hopper runs MXFP4 as W4A16, the catalog has no FP4 peak",
        ("mx-fp4", "mxfp4-moe"),
    ),
    QuantScheme(
        "nvfp4", 4 + 8 / 16, "bf16", False, "modelopt_fp4", 0.0,
        "no published figure vs BF16 in PERF_MODEL.md; compute at the BF16 peak (the catalog "
        "has no FP4 peak)",
        ("nv-fp4", "modelopt-fp4", "fp4"),
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
        """A built-in model by name (an org prefix such as `meta-llama/` is ignored), else
        a vendored config.json in `data/configs/` (`org--name.json`, found by name)."""
        found = self._model_index.get(_key(name.split("/")[-1]))
        if found is None:
            path = _vendored_configs().get(_key(name.split("/")[-1]))
            if path is not None:
                return _vendored_model(path)
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

CONFIG_DIR = Path(__file__).parent / "data" / "configs"


@lru_cache(maxsize=1)
def _vendored_configs() -> Mapping[str, Path]:
    """Name key -> path of each vendored config.json (`org--name.json`)."""
    return MappingProxyType(
        {_key(path.stem.split("--")[-1]): path for path in sorted(CONFIG_DIR.glob("*.json"))}
    )


@lru_cache(maxsize=64)
def _vendored_model(path: Path) -> ModelSpec:
    model = model_from_hf_config(path)
    org_name = path.stem.replace("--", "/", 1)
    return replace(model, name=org_name, source=f"advisor/engine/data/configs/{path.name}")


def _int_field(config: Mapping[str, Any], names: tuple[str, ...], source: str) -> int | None:
    for name in names:
        if name in config and config[name] is not None:
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CatalogError(f"{source}: {name} must be a positive integer, got {value!r}")
            return value
    return None


# Values a family's transformers config class supplies when config.json leaves them out.
_FAMILY_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "gemma3_text": {  # transformers Gemma3TextConfig
        "vocab_size": 262_208,
        "max_position_embeddings": 131_072,
        "tie_word_embeddings": True,
        "head_dim": 256,
    },
    "gemma2": {"tie_word_embeddings": True},
}
# Families whose config class unties the LM head by default.
_UNTIED_BY_DEFAULT = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next",
        "deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "gpt_oss", "llama4_text",
    }
)  # fmt: skip


def _noted_keys(top: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """Fields that change the cost but are not modelled: each becomes an assumption."""
    notes: list[str] = []
    if config.get("index_topk"):
        notes.append(
            "index_topk: the indexer's key cache taken as vLLM's (fp8 key + fp32 scale per 128); "
            "picking the top-k costs nothing beyond the index scores"
        )
    mtp = config.get("num_nextn_predict_layers") or config.get("mtp_num_hidden_layers")
    if mtp:
        notes.append(
            f"{mtp} multi-token-prediction layer(s) not counted (vLLM loads them only for "
            "speculative decoding)"
        )
    for key in ("vision_config", "audio_config"):
        if isinstance(top.get(key), Mapping):
            notes.append(f"{key}: the encoder's weights are not counted (text model only)")
    for key in (
        "num_kv_shared_layers",
        "global_head_dim",
        "dual_chunk_attention_config",
        "linear_attn_config",
    ):
        if config.get(key):
            notes.append(f"{key} not modelled: layers counted as plain attention + MLP")
    return notes


def model_from_hf_dict(config: Mapping[str, Any], *, name: str) -> ModelSpec:
    """A `ModelSpec` from a parsed Hugging Face config (see `advisor.engine.architecture`).

    Multimodal wrappers are read through their `text_config`. What the reader does not
    understand is listed in `ModelSpec.assumptions`; a missing or malformed field raises
    `CatalogError` naming it.
    """
    source = f"config.json of {name}"
    top = config
    text = config.get("text_config")
    if isinstance(text, Mapping):
        config = {**config, **text}
    assumptions: list[str] = []
    model_type = str(config.get("model_type", ""))
    defaults = _FAMILY_DEFAULTS.get(model_type, {})
    filled = dict(config)
    for key, value in defaults.items():
        if config.get(key) is None:
            filled[key] = value
            assumptions.append(f"{key}: absent; took {model_type}'s default {value!r}")
    config = filled

    def need(*names: str) -> int:
        value = _int_field(config, names, source)
        if value is None:
            raise CatalogError(f"{source}: missing {names[0]}")
        return value

    hidden = need("hidden_size", "n_embd", "d_model")
    heads = need("num_attention_heads", "n_head")
    kv_heads = _int_field(config, ("num_key_value_heads",), source) or heads
    head_dim = _int_field(config, ("head_dim",), source) or hidden // heads
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    if "tie_word_embeddings" not in config and model_type not in _UNTIED_BY_DEFAULT:
        assumptions.append("tie_word_embeddings: absent; counted an untied LM head")
    max_len = _int_field(config, ("max_position_embeddings",), source)
    if max_len is None:
        assumptions.append("max_position_embeddings: absent; took 8192")
    assumptions.extend(_noted_keys(top, config))
    try:
        structure = read_layers(
            config,
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            source=source,
            assumptions=assumptions,
        )
        weight_format = read_weight_format(
            config.get("quantization_config"), source=source, assumptions=assumptions
        )
    except (ArchitectureError, ValueError) as exc:
        raise CatalogError(str(exc)) from None
    moe = [layer.mlp for layer in structure if layer.mlp.kind == "moe"]
    dense = [layer.mlp for layer in structure if layer.mlp.kind == "dense"]
    return ModelSpec(
        name=name,
        num_layers=len(structure),  # hybrid blocks are paired into layers (see read_layers)
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=(moe[0] if moe else dense[0]).intermediate_size,
        vocab_size=need("vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        num_experts=moe[0].num_experts if moe else 1,
        experts_per_token=moe[0].experts_per_token if moe else 1,
        attention_bias=bool(config.get("attention_bias", model_type in ("qwen2", "qwen2_moe"))),
        max_position_embeddings=max_len or 8192,
        source=source,
        layer_structure=structure,
        weight_format=weight_format,
        assumptions=tuple(assumptions),
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
    name = config_path.stem if config_path.name != "config.json" else config_path.parent.name
    return model_from_hf_dict(parsed, name=name or config_path.stem)


def resolve_model(name_or_path: str, catalog: Catalog = DEFAULT_CATALOG) -> ModelSpec:
    """A built-in model name, or a path to a config.json / model directory."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or (candidate.is_dir() and (candidate / "config.json").exists()):
        return model_from_hf_config(candidate)
    return catalog.model(name_or_path)
