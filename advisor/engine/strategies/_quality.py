"""Quality change of a precision versus BF16, with its source and how much to trust it.

Order of preference: the user's own measurement (`DeploymentSpec.quality_overrides`), a
published figure (the catalog's `QuantScheme.quality_delta_points` and `quality_source`,
which say which model was measured), else an estimate, flagged as such. An FP8 KV cache has
no published figure here: it is counted as an estimate of no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.scenario import DeploymentSpec, QualityOverride

Kind = Literal["reference", "measured", "published", "estimate"]
_RANK = {"reference": 0, "measured": 1, "published": 2, "estimate": 3}

KV_FP8_SOURCE = (
    "estimate: no published figure used here for an FP8 KV cache (vLLM documents its accuracy "
    "impact as small); counted as no change"
)


@dataclass(frozen=True)
class Quality:
    delta_points: float  # benchmark points versus BF16, negative = worse
    source: str
    kind: Kind

    @property
    def loss_points(self) -> float:
        return max(-self.delta_points, 0.0)


def weights_quality(spec: DeploymentSpec, weight_dtype: str) -> Quality:
    return scheme_quality(spec.model, spec.quality_overrides, weight_dtype)


def scheme_quality(
    model: str, overrides: Mapping[str, QualityOverride], weight_dtype: str
) -> Quality:
    """A precision's quality change for `model`: the user's figure, else the catalog's.

    `weights_quality` without a whole deployment spec (a benchmark A/B labels each side's
    checkpoint with it). CatalogError for an unknown `weight_dtype`.
    """
    scheme = DEFAULT_CATALOG.quant(weight_dtype)
    override = overrides.get(scheme.name) or next(
        (v for k, v in overrides.items() if DEFAULT_CATALOG.quant(k) is scheme), None
    )
    if override is not None:
        return Quality(override.delta_points, f"measured by you: {override.source}", "measured")
    if scheme.quality_source == "reference":
        return Quality(0.0, "reference precision", "reference")
    source = scheme.quality_source
    kind: Kind = "estimate" if "assumption" in source.lower() else "published"
    note = "" if kind == "estimate" else f"; applied to {model} as published for that model"
    return Quality(scheme.quality_delta_points, source + note, kind)


def quality_of(spec: DeploymentSpec, weight_dtype: str, kv_cache_dtype: str) -> Quality:
    """Weights and KV cache together (their deltas add; the weaker source kind wins)."""
    weights = weights_quality(spec, weight_dtype)
    if kv_cache_dtype.startswith("fp8"):
        kind = weights.kind if _RANK[weights.kind] >= _RANK["estimate"] else "estimate"
        return Quality(weights.delta_points, f"{weights.source}; KV {KV_FP8_SOURCE}", kind)
    return weights
