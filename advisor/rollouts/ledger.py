"""Realized-savings arithmetic: a change's projection beside what was measured, and flags.

A projection (kept on the ConfigChange, copied into the ledger when the rollout is done) is
{"baseline": FIGURES, "projected": FIGURES, "source": "..."} where FIGURES has any of
`PROJECTION_FIELDS` (GPU count, mean utilization %, output tokens/s, TTFT and TPOT p95 in
seconds, USD per hour and per 1M output tokens). Measured figures (`before`, `after`) have
the same fields, from telemetry of the rollout's nodes over equal windows before the start
and after the end.

Savings are compared on one basis: USD per 1M tokens when both the projection and the
measurement have it (efficiency: robust to load changing between the windows), else USD
per hour. Flags:
- `below_half`: realized savings (fraction of the before cost) under half the projected
  fraction (a projection of no savings, or none at all, cannot be missed by half);
- `slo_worse`: a latency p95 that met its SLO before and misses it after, or that missed it
  before and is worse after.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROJECTION_FIELDS = (
    "gpus",
    "util_pct",
    "throughput_tok_s",
    "ttft_p95_s",
    "tpot_p95_s",
    "usd_per_hour",
    "usd_per_1m_tokens",
)
BASES = ("usd_per_1m_tokens", "usd_per_hour")
SLO_FIELDS = ("ttft_p95_s", "tpot_p95_s")


class ProjectionError(ValueError):
    """A projection is malformed; `field` names the part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_projection(data: Any) -> dict[str, Any]:
    """A validated copy of a projection ({} stays {}: a change written by hand)."""
    if data in (None, {}):
        return {}
    if not isinstance(data, Mapping):
        raise ProjectionError("projection", "expected an object with baseline and projected")
    unknown = sorted(set(data) - {"baseline", "projected", "source", "assumptions"})
    if unknown:
        raise ProjectionError(f"projection.{unknown[0]}", "unknown field")
    out: dict[str, Any] = {}
    for part in ("baseline", "projected"):
        figures = data.get(part)
        if not isinstance(figures, Mapping) or not figures:
            raise ProjectionError(f"projection.{part}", "required: an object of figures")
        bad = sorted(set(figures) - set(PROJECTION_FIELDS))
        if bad:
            raise ProjectionError(
                f"projection.{part}.{bad[0]}",
                f"unknown figure (known: {', '.join(PROJECTION_FIELDS)})",
            )
        clean: dict[str, float] = {}
        for name, value in figures.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ProjectionError(
                    f"projection.{part}.{name}", f"expected a number, got {value!r}"
                )
            if not math.isfinite(value) or value < 0:
                raise ProjectionError(f"projection.{part}.{name}", "must be a finite number >= 0")
            clean[name] = float(value)
        out[part] = clean
    if basis_of(out["baseline"], out["projected"]) is None:
        raise ProjectionError(
            "projection", "baseline and projected need usd_per_1m_tokens or usd_per_hour both"
        )
    for key in ("source", "assumptions"):
        if key in data:
            out[key] = data[key] if isinstance(data[key], str | list) else str(data[key])
    return out


def basis_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    for basis in BASES:
        if _positive(before.get(basis)) and isinstance(after.get(basis), int | float):
            return basis
    return None


def savings_fraction(before: Mapping[str, Any], after: Mapping[str, Any], basis: str) -> float:
    """(before - after) / before on `basis`: 0.3 = 30% cheaper."""
    b, a = float(before[basis]), float(after[basis])
    return (b - a) / b


@dataclass(frozen=True)
class Realized:
    basis: str | None
    projected_fraction: float | None
    realized_fraction: float | None
    usd_per_hour_saved: float | None
    projected_usd_per_hour_saved: float | None
    flags: tuple[str, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "projected_fraction": self.projected_fraction,
            "realized_fraction": self.realized_fraction,
            "realized_over_projected": (
                self.realized_fraction / self.projected_fraction
                if self.realized_fraction is not None and self.projected_fraction
                else None
            ),
            "usd_per_hour_saved": self.usd_per_hour_saved,
            "projected_usd_per_hour_saved": self.projected_usd_per_hour_saved,
        }


def realize(
    projection: Mapping[str, Any],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    slo: Mapping[str, Any],
) -> Realized:
    """Compare measured `before`/`after` with `projection` under `slo` (see the module doc)."""
    flags: list[str] = []
    notes: list[str] = []
    baseline = projection.get("baseline") or {}
    projected = projection.get("projected") or {}
    projected_basis = basis_of(baseline, projected) if projection else None
    basis = None
    for candidate in ([projected_basis] if projected_basis else []) + list(BASES):
        if candidate and basis_of(
            {candidate: before.get(candidate)}, {candidate: after.get(candidate)}
        ):
            basis = candidate
            break
    realized_fraction = savings_fraction(before, after, basis) if basis else None
    projected_fraction = None
    if (
        basis
        and projection
        and basis_of({basis: baseline.get(basis)}, {basis: projected.get(basis)})
    ):
        projected_fraction = savings_fraction(baseline, projected, basis)
    elif projection:
        notes.append(f"the projection has no {basis or 'cost'} figure to compare with")
    else:
        notes.append("no projection: a change written by hand")
    if basis is None:
        notes.append("no cost measured on both sides (no priced GPU telemetry or no throughput)")
    if (
        projected_fraction is not None
        and projected_fraction > 0
        and realized_fraction is not None
        and realized_fraction < 0.5 * projected_fraction
    ):
        flags.append(
            f"below_half: realized {realized_fraction:.1%} savings on {basis} is under half "
            f"the projected {projected_fraction:.1%}"
        )
    for name in SLO_FIELDS:
        raw_limit, b, a = slo.get(name), before.get(name), after.get(name)
        if not (isinstance(raw_limit, int | float) and raw_limit > 0):
            continue
        if not isinstance(a, int | float):
            continue
        limit = float(raw_limit)
        if isinstance(b, int | float) and b <= limit < a:
            flags.append(
                f"slo_worse: {name} {a * 1000:.0f} ms misses the SLO "
                f"{limit * 1000:.0f} ms it met before ({b * 1000:.0f} ms)"
            )
        elif isinstance(b, int | float) and b > limit and a > b:
            flags.append(
                f"slo_worse: {name} {a * 1000:.0f} ms, worse than {b * 1000:.0f} ms "
                f"before, both over the SLO {limit * 1000:.0f} ms"
            )
        elif not isinstance(b, int | float) and a > limit:
            flags.append(
                f"slo_worse: {name} {a * 1000:.0f} ms misses the SLO "
                f"{limit * 1000:.0f} ms (nothing measured before)"
            )
    saved = _difference(before, after, "usd_per_hour")
    projected_saved = _difference(baseline, projected, "usd_per_hour")
    return Realized(
        basis,
        projected_fraction,
        realized_fraction,
        saved,
        projected_saved,
        tuple(flags),
        tuple(notes),
    )


def _difference(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> float | None:
    b, a = before.get(key), after.get(key)
    if isinstance(b, int | float) and isinstance(a, int | float):
        return float(b) - float(a)
    return None


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
