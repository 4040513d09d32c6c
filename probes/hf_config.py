"""What the engine reads from a deployment's stored config.json (no database: a pure function).

`config_reading(config, name=...)` runs the engine's reader (`model_from_hf_dict`) once and
returns what the deployment page shows and assessments use: the `ModelSpec`, or the reader's
error naming the field; a one-line description; parameters; KV bytes per token; the weight
format; and the assumptions the reader made instead of guessing silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from advisor.engine.architecture import describe
from advisor.engine.catalog import CatalogError, ModelSpec, model_from_hf_dict

# KV bytes per element of the model's own dtype (vLLM's kv_cache_dtype auto for a 16-bit model).
KV_BYTES_PER_ELEMENT_16BIT = 2.0


@dataclass(frozen=True)
class ConfigReading:
    """The engine's reading of a config.json: `model` is None and `error` says why when the
    reader refused it."""

    model: ModelSpec | None
    error: str | None = None

    @property
    def description(self) -> str:
        return describe(self.model) if self.model else ""

    @property
    def total_params(self) -> int:
        return self.model.total_params if self.model else 0

    @property
    def active_params(self) -> int:
        return self.model.active_params if self.model else 0

    @property
    def total_params_b(self) -> float:
        return self.total_params / 1e9

    @property
    def active_params_b(self) -> float:
        return self.active_params / 1e9

    @property
    def kv_bytes_per_token_16bit(self) -> float:
        """KV bytes each token adds at a 16-bit KV cache (layers that keep every token)."""
        return self.model.kv_bytes_per_token(KV_BYTES_PER_ELEMENT_16BIT) if self.model else 0.0

    @property
    def weight_format(self) -> str:
        fmt = self.model.weight_format if self.model else None
        if fmt is None:
            return "none in the config: 16-bit, or the deployment's --quantization"
        return f"{fmt.method} ({fmt.scheme}, {fmt.bits_per_weight:.3g} bits per weight)"

    @property
    def assumptions(self) -> tuple[str, ...]:
        return self.model.assumptions if self.model else ()


def config_reading(config: Mapping[str, Any], *, name: str) -> ConfigReading:
    """The engine's reading of `config` for the model `name` (its reader's error, if any)."""
    try:
        return ConfigReading(model_from_hf_dict(config, name=name))
    except CatalogError as exc:
        return ConfigReading(None, str(exc))
    except (ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as exc:
        # A stored config comes from any agent or upload: a shape the reader did not expect
        # must leave the deployment a named data gap, never fail a page or an assessment.
        return ConfigReading(None, f"config.json of {name}: not readable ({exc!r})")
