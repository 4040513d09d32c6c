"""Money in words, one way for every page, figure and report: $1,234 / -$4,060 / $12.50."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def usd(value: float) -> str:
    """The sign before the dollar; no cents from $100 up, cents below."""
    size = abs(value)
    text = f"${size:,.0f}" if size >= 100 else f"${size:,.2f}"
    return "-" + text if value < 0 and text != "$0.00" else text


def signed_usd(value: float) -> str:
    """A change: +$1,234 / -$4,060 / $0.00."""
    text = usd(value)
    return "+" + text if value > 0 and text != "$0.00" else text


def prefix_reuse_line(points: Sequence[Mapping[str, Any]]) -> str:
    """The plan at assumed prefix reuse shares (the engine's `DeploymentPlan.prefix_reuse`):
    "prefix reuse unknown: plan $A/month at 0%, $B at 30%, $C at 60%"; "" without points.

    A share the chosen configuration cannot serve says so; one missing its SLOs is marked.
    """
    parts = []
    for index, point in enumerate(points):
        cost = point.get("usd_per_month")
        share = float(point.get("reuse_share") or 0.0)
        if isinstance(cost, int | float) and math.isfinite(cost):
            text = usd(cost) + ("/month" if index == 0 else "")
        else:
            text = "cannot be served"
        if text != "cannot be served" and not point.get("meets_slo", True):
            text += " (misses its SLOs)"
        parts.append(f"{text} at {share:.0%}")
    return "prefix reuse unknown: plan " + ", ".join(parts) if parts else ""
