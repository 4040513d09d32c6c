"""A checkpoint's own weight format, read from its config.json `quantization_config`.

`read_weight_format(quantization_config, source, assumptions)` understands the formats vLLM
serves widely: `mxfp4` (gpt-oss), `fp8` per-tensor and block (`weight_block_size`),
`compressed-tensors` (`config_groups` with `num_bits`, `type`, `strategy`, `group_size`,
`targets`, and `ignore`), `awq` and `gptq` (`bits`, `group_size`, `zero_point`), and ModelOpt
(`quant_algo` FP8 / NVFP4 with `exclude_modules`). `WeightFormat.bits(group, module)` gives the
bits per weight (scales included) of a tensor group's matrices in one layer; vectors (norms,
biases), embeddings, the router and (except GPTQ with `lm_head`) the LM head stay 16-bit, as
vLLM loads them. A format it does not know, or a field it cannot read, becomes a listed
assumption (weights counted at 16 bits), never a silent guess.

Bits per weight (MODEL_ARCH.md): FP8 8 (+32/16384 for a 128x128 block's FP32 scale);
AWQ/GPTQ b + 16/g (FP16 scale) + b/g (zero point); MXFP4 4 + 8/32 (E8M0 per 32);
NVFP4 4 + 8/16 (E4M3 per 16; the FP32 per-tensor scale is negligible).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass, field
from typing import Any, Literal

ComputeKind = Literal["bf16", "fp8", "int8"]

# Groups a method quantizes at all (embeddings, router and norms never, in vLLM).
LINEAR_GROUPS = frozenset({"attention", "dense_mlp", "experts", "shared_experts"})


@dataclass(frozen=True)
class TargetRule:
    """One compressed-tensors config group: the modules it targets and their bits."""

    targets: tuple[str, ...]
    bits: float
    scheme: str


@dataclass(frozen=True)
class WeightFormat:
    """How a checkpoint stores its weights, group by group.

    `scheme` is the catalog `QuantScheme` name that describes it best (for its quality delta
    and vLLM name); `groups` are the tensor groups the method can quantize; `rules` (only
    compressed-tensors) map module patterns to bits, first match wins; `ignore` lists modules
    kept in 16 bits; `lm_head_bits` is set when the LM head is quantized too (GPTQ lm_head).
    """

    method: str
    scheme: str
    compute: ComputeKind
    bits_per_weight: float
    groups: frozenset[str] = LINEAR_GROUPS
    ignore: tuple[str, ...] = ()
    rules: tuple[TargetRule, ...] = ()
    lm_head_bits: float | None = None
    notes: tuple[str, ...] = field(default=())

    def bits(self, group: str, modules: tuple[str, ...]) -> float:
        """Bits per weight of `group`'s matrices in a layer, given the module's names
        (aliases across families, e.g. `model.layers.3.mlp.shared_expert(s)`).

        A module is ignored when its name, or every projection in it, matches an ignore
        entry (an entry naming one projection of several leaves the group quantized); a
        compressed-tensors rule applies when it targets the module or any projection in it
        (targets such as `re:...experts\\.\\d+\\.(gate|up|down)_proj$`).
        """
        if group == "lm_head" and self.lm_head_bits is not None:
            return self.lm_head_bits
        if group not in self.groups:
            return 16.0
        for module in modules:
            names = _projections(module)
            if any(_matches(p, module) for p in self.ignore) or all(
                any(_matches(p, name) for p in self.ignore) for name in names
            ):
                return 16.0
        if self.rules:
            for rule in self.rules:
                for module in modules:
                    for name in (module, *_projections(module)):
                        if any(t == "Linear" or _matches(t, name) for t in rule.targets):
                            return rule.bits
            return 16.0
        return self.bits_per_weight


# The names each tensor group goes by in the checkpoints of the families read here.
MODULE_NAMES: Mapping[str, tuple[str, ...]] = {
    "attention": ("self_attn",),
    "linear_attention": ("linear_attn",),
    "dense_mlp": ("mlp", "feed_forward"),
    "experts": ("mlp.experts", "block_sparse_moe.experts", "feed_forward.experts"),
    "shared_experts": ("mlp.shared_experts", "mlp.shared_expert", "feed_forward.shared_expert"),
    "router": ("mlp.gate", "mlp.router", "block_sparse_moe.gate", "feed_forward.router"),
    "norms": ("input_layernorm",),
}
# Projections inside each module (by the module's last name), for per-projection patterns.
_PROJECTIONS: Mapping[str, tuple[str, ...]] = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "linear_attn": ("in_proj_qkvz", "in_proj_ba", "out_proj"),
    "experts": ("0.gate_proj", "0.up_proj", "0.down_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "feed_forward": ("gate_proj", "up_proj", "down_proj"),
    "shared_experts": ("gate_proj", "up_proj", "down_proj"),
    "shared_expert": ("gate_proj", "up_proj", "down_proj"),
}


def _projections(module: str) -> tuple[str, ...]:
    return tuple(f"{module}.{name}" for name in _PROJECTIONS.get(module.rsplit(".", 1)[-1], ()))


def layer_modules(index: int, group: str) -> tuple[str, ...]:
    return tuple(f"model.layers.{index}.{name}" for name in MODULE_NAMES[group])


def _normalise(name: str) -> str:
    """Multimodal checkpoints prefix the text model; compare on `model.layers...`."""
    for prefix in ("model.language_model.", "language_model.model.", "language_model."):
        if name.startswith(prefix):
            return "model." + name[len(prefix) :]
    return name


def _matches(pattern: str, module: str) -> bool:
    """vLLM's skip rules: `re:` regex, glob, a module prefix, or a dotted-name fragment."""
    if pattern.startswith("re:"):
        return (
            re.match(pattern[3:], module) is not None
            or re.match(pattern[3:], module + ".") is not None
        )
    pattern = _normalise(pattern)
    if "*" in pattern:
        return fnmatch.fnmatchcase(module, pattern) or fnmatch.fnmatchcase(module, pattern + ".*")
    if module == pattern or module.startswith(pattern + "."):
        return True
    # a fragment such as "self_attn", "lm_head" or "layers.0." matches whole dotted parts
    return f".{pattern.strip('.')}." in f".{module}."


def _fail(source: str, field_name: str, value: object) -> ValueError:
    return ValueError(f"{source}: quantization_config.{field_name} not understood: {value!r}")


def _pos_int(qc: Mapping[str, Any], name: str, source: str, default: int | None = None) -> int:
    value = qc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, name, value)
    return value


def _ignore_list(qc: Mapping[str, Any], name: str, source: str) -> tuple[str, ...]:
    value = qc.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(source, name, value)
    return tuple(value)


def _int_group_bits(bits: int, group_size: int | None, zero_point: bool) -> float:
    if not group_size:  # per channel: one scale per output row, negligible per weight
        return float(bits)
    return bits + 16 / group_size + (bits / group_size if zero_point else 0.0)


def _ct_weights_bits(weights: Mapping[str, Any], where: str) -> tuple[float, str]:
    """Bits per weight and scheme of one compressed-tensors `weights` block."""
    bits = weights.get("num_bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"{where}.weights.num_bits not understood: {bits!r}")
    kind = weights.get("type", "int")
    strategy = weights.get("strategy", "tensor")
    group = weights.get("group_size")
    if kind == "float" and bits == 4:  # NVFP4 (tensor_group of 16, E4M3 scale) or MXFP4
        fp4_group = group if isinstance(group, int) and group > 0 else 16
        return 4 + 8 / fp4_group, "nvfp4" if fp4_group == 16 else "mxfp4"
    if kind == "float" and bits == 8:
        if strategy == "block":
            block = weights.get("block_structure") or [128, 128]
            return 8 + 32 / (int(block[0]) * int(block[1])), "fp8-block"
        return 8.0, "fp8-per-channel" if strategy == "channel" else "fp8"
    if kind == "int":
        int_group = group if strategy == "group" and isinstance(group, int) and group > 0 else None
        zero = not bool(weights.get("symmetric", True))
        scheme = {4: "w4a16", 8: "int8"}.get(bits, f"int{bits}")
        return _int_group_bits(bits, int_group, zero), scheme
    raise ValueError(f"{where}.weights.type not understood: {kind!r}")


def _compressed_tensors(qc: Mapping[str, Any], source: str) -> WeightFormat:
    groups = qc.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise _fail(source, "config_groups", groups)
    rules: list[TargetRule] = []
    compute: ComputeKind = "bf16"
    for name, group in groups.items():
        where = f"{source}: quantization_config.config_groups.{name}"
        if not isinstance(group, Mapping) or not isinstance(group.get("weights"), Mapping):
            raise ValueError(f"{where}.weights missing")
        targets = group.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"{where}.targets must be a list of names, got {targets!r}")
        bits, scheme = _ct_weights_bits(group["weights"], where)
        activations = group.get("input_activations")
        if isinstance(activations, Mapping) and activations.get("num_bits") == 8:
            compute = "fp8" if activations.get("type") == "float" else "int8"
            if scheme == "int8":
                scheme = "int8"
        elif scheme == "int8":
            scheme = "gptq-int8"  # W8A16
        rules.append(TargetRule(tuple(targets), bits, scheme))
    return WeightFormat(
        method="compressed-tensors",
        scheme=rules[0].scheme,
        compute=compute,
        bits_per_weight=rules[0].bits,
        ignore=_ignore_list(qc, "ignore", source),
        rules=tuple(rules),
    )


def read_weight_format(
    qc: object, *, source: str, assumptions: MutableSequence[str]
) -> WeightFormat | None:
    """The format a `quantization_config` describes (None when there is none)."""
    if qc is None:
        return None
    if not isinstance(qc, Mapping):
        raise _fail(source, "(itself)", qc)
    if "quantization" in qc and isinstance(qc["quantization"], Mapping):  # hf_quant_config.json
        qc = {"quant_method": "modelopt", **qc["quantization"]}
    method = str(qc.get("quant_method", "")).lower()
    if qc.get("kv_cache_scheme") or qc.get("kv_cache_quant_algo"):
        assumptions.append(
            "quantization_config names a KV-cache scheme: KV bytes follow the deployment's kv_dtype"
        )
    if method == "mxfp4":
        # vLLM's Mxfp4Config quantizes the fused MoE experts only; attention, router,
        # embeddings and lm_head stay BF16 (gpt-oss lists them in modules_to_not_convert).
        return WeightFormat(
            method, "mxfp4", "bf16", 4 + 8 / 32, groups=frozenset({"experts"}),
            ignore=_ignore_list(qc, "modules_to_not_convert", source),
        )  # fmt: skip
    if method == "fp8":
        block = qc.get("weight_block_size")
        ignore = _ignore_list(qc, "modules_to_not_convert", source) + _ignore_list(
            qc, "ignored_layers", source
        )
        if block is None:
            return WeightFormat(method, "fp8", "fp8", 8.0, ignore=ignore)
        if (
            not isinstance(block, list)
            or len(block) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)
        ):
            raise _fail(source, "weight_block_size", block)
        return WeightFormat(
            method, "fp8-block", "fp8", 8 + 32 / (block[0] * block[1]), ignore=ignore
        )
    if method == "compressed-tensors":
        return _compressed_tensors(qc, source)
    if method in ("awq", "gptq"):
        bits = _pos_int(qc, "bits", source)
        group = qc.get("group_size", 128)
        if isinstance(group, bool) or not isinstance(group, int) or group == 0 or group < -1:
            raise _fail(source, "group_size", group)
        size = None if group == -1 else group
        # AWQ stores a zero point when zero_point is true; GPTQ always stores packed qzeros.
        zero = bool(qc.get("zero_point", True)) if method == "awq" else True
        bits_per_weight = _int_group_bits(bits, size, zero)
        scheme = f"{method}-int{bits}"
        lm_head = bits_per_weight if method == "gptq" and qc.get("lm_head") is True else None
        return WeightFormat(
            method, scheme, "bf16", bits_per_weight,
            ignore=_ignore_list(qc, "modules_to_not_convert", source), lm_head_bits=lm_head,
        )  # fmt: skip
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(qc.get("quant_algo", "")).upper()
        ignore = _ignore_list(qc, "exclude_modules", source) + _ignore_list(qc, "ignore", source)
        if algo == "FP8":
            return WeightFormat(method, "fp8", "fp8", 8.0, ignore=ignore)
        if algo == "NVFP4":
            group = _pos_int(qc, "group_size", source, 16)
            assumptions.append(
                "nvfp4: no FP4 tensor-core peak in the catalog; matmuls counted at the BF16 peak"
            )
            return WeightFormat(method, "nvfp4", "bf16", 4 + 8 / group, ignore=ignore)
        assumptions.append(
            f"quantization_config.quant_algo {algo or None!r} not understood: "
            "weights counted at 16 bits"
        )
        return None
    assumptions.append(
        f"quantization_config.quant_method {method or None!r} not understood: "
        "weights counted at 16 bits"
    )
    return None
