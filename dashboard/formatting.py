"""Money in words, one way for every page, figure and report: $1,234 / -$4,060 / $12.50."""

from __future__ import annotations


def usd(value: float) -> str:
    """The sign before the dollar; no cents from $100 up, cents below."""
    size = abs(value)
    text = f"${size:,.0f}" if size >= 100 else f"${size:,.2f}"
    return "-" + text if value < 0 and text != "$0.00" else text


def signed_usd(value: float) -> str:
    """A change: +$1,234 / -$4,060 / $0.00."""
    text = usd(value)
    return "+" + text if value > 0 and text != "$0.00" else text
