"""A/B sides that serve different checkpoints: each side's precision and its quality label.

A speed benchmark measures tokens per second and latency, never answer quality: an A/B
between a BF16 checkpoint and its AWQ one says how much faster the AWQ one is, not how much
worse it answers. Each side's quality figure is the one the quantization strategy uses
(`advisor.engine.strategies._quality.scheme_quality`): the user's own measurement when the job
gives one, else the catalog's published figure for the precision, labelled with its source
and kind (reference, measured, published, estimate).

A side's precision comes, in this order, from the job (`ab.<side>_quant`), from the
checkpoint's config.json when the node that ran it is this machine (`quantization_config`,
else `dtype`), or, for a side serving the endpoint's own checkpoint, from the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from advisor.engine.catalog import CatalogError
from advisor.engine.scenario import QualityOverride
from advisor.engine.strategies._quality import scheme_quality
from probes.agent.model_config import ConfigNotFound, config_path

QUALITY_NOT_MEASURED = (
    "Quality is not measured by a speed benchmark: this A/B measured throughput and latency "
    "only. Each side's quality figure is the catalog's published one or your own, as labelled."
)
# config.json `quantization_config` -> catalog precision, by (quant_method, bits); fp8 any.
_QUANT_METHODS = {("awq", 4): "awq-int4", ("gptq", 4): "gptq-int4", ("gptq", 8): "gptq-int8"}
_DTYPES = {"bfloat16": "bf16", "float16": "fp16"}


def precision_of_config(config: Mapping[str, Any]) -> str | None:
    """The catalog precision a checkpoint's config.json declares, else None (not known here).

    `compressed-tensors` and other schemes that hide the precision in per-layer groups give
    None: the job must say it (`ab.<side>_quant`).
    """
    quant = config.get("quantization_config")
    if isinstance(quant, Mapping):
        method = str(quant.get("quant_method", "")).lower()
        if method == "fp8":
            return "fp8"
        bits = quant.get("bits", quant.get("w_bit"))
        return _QUANT_METHODS.get((method, bits)) if isinstance(bits, int) else None
    dtype = config.get("dtype", config.get("torch_dtype"))
    return _DTYPES.get(dtype) if isinstance(dtype, str) else None


def checkpoint_precision(model: str, env: Mapping[str, str]) -> str | None:
    """`precision_of_config` of a checkpoint on this machine; None when it cannot be read."""
    try:
        config = json.loads(config_path(model, env).read_text())
    except (ConfigNotFound, OSError, ValueError):
        return None
    return precision_of_config(config) if isinstance(config, dict) else None


def side_quality(
    model_name: str,
    precision: str | None,
    precision_from: str,
    own: QualityOverride | None = None,
) -> dict[str, Any]:
    """One side's quality figure, labelled: the user's own (`own`), else the catalog's.

    `model_name`: the endpoint's model (a published figure is "applied to" it). `precision`
    None: nobody said what the side serves, so no figure is given.
    """
    if precision is None:
        return {
            "precision": None,
            "precision_from": precision_from,
            "delta_points": None,
            "source": "no quality figure: the precision of this side is not known "
            "(state it as ab.<side>_quant)",
            "kind": None,
        }
    overrides = {precision: own} if own is not None else {}
    try:
        quality = scheme_quality(model_name, overrides, precision)
    except CatalogError as exc:
        return {
            "precision": precision,
            "precision_from": precision_from,
            "delta_points": None,
            "source": f"no quality figure: {exc}",
            "kind": None,
        }
    return {
        "precision": precision,
        "precision_from": precision_from,
        "delta_points": quality.delta_points,
        "source": quality.source,
        "kind": quality.kind,
    }
