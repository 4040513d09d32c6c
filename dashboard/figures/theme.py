"""The project's look for every figure, and the JSON a page embeds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
from django.utils.safestring import SafeString, mark_safe

FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
INK = "#1d2430"
MUTED = "#5b6676"
GRID = "#e5e7eb"
ACCENT = "#2563eb"
BAD = "#b91c1c"
OK = "#15803d"
WARN = "#b45309"
SERIES = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
# Utilization: dark (idle, money burning) to bright (busy).
UTIL_SCALE = [
    [0.0, "#1e1b4b"], [0.05, "#312e81"], [0.25, "#3b82f6"], [0.5, "#22c55e"],
    [0.75, "#eab308"], [1.0, "#f97316"],
]  # fmt: skip

_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 12, "color": INK},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(SERIES),
        "margin": {"l": 56, "r": 16, "t": 36, "b": 40},
        "title": {"font": {"size": 14}, "x": 0, "xref": "paper"},
        "xaxis": {"gridcolor": GRID, "linecolor": GRID, "zeroline": False},
        "yaxis": {"gridcolor": GRID, "linecolor": GRID, "zeroline": False},
        "legend": {"orientation": "h", "y": -0.3},
        "hoverlabel": {"font": {"family": FONT}},
    }
)


def themed(fig: go.Figure, *, title: str | None = None, height: int = 320) -> go.Figure:
    fig.update_layout(template=_TEMPLATE, height=height)
    if title:
        fig.update_layout(title={"text": title})
    return fig


def empty(message: str, *, title: str | None = None, height: int = 220) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of blank axes)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
        font={"color": MUTED, "size": 13},
    )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return themed(fig, title=title, height=height)


# A log axis spanning more decades than this gets a tick per decade only (1, 10, 100, ...).
LOG_STEPS_UP_TO_DECADES = 3


def log_ticks(values: Iterable[float]) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a log axis over `values`: 1-2-5 steps (per decade only
    when the data spans more than `LOG_STEPS_UP_TO_DECADES`), each labelled in full ("20",
    "500", "2k"), never Plotly's bare "2" and "5" between powers of ten."""
    positive = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return [], []
    low, high = min(positive), max(positive)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1.0,) if last - first > LOG_STEPS_UP_TO_DECADES else (1.0, 2.0, 5.0)
    candidates = [s * 10.0**e for e in range(first - 1, last + 2) for s in steps]
    # from the tick at or below the lowest value to the one at or above the highest
    bottom = max(t for t in candidates if t <= low)
    top = min(t for t in candidates if t >= high)
    ticks = [round(t, 12) for t in candidates if bottom <= t <= top]
    return ticks, [_tick_text(t) for t in ticks]


def _tick_text(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:,.10g}"


def log_axis(fig: go.Figure, axis: str, values: Iterable[float], **options: Any) -> go.Figure:
    """Make `axis` ("x" or "y") logarithmic with readable ticks (`log_ticks`)."""
    tickvals, ticktext = log_ticks(values)
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(type="log", tickvals=tickvals or None, ticktext=ticktext or None, **options)
    return fig


def figure_json(fig: go.Figure) -> SafeString:
    """The figure as JSON that is safe inside <script type="application/json">.

    Escapes <, > and & like Django's json_script, so no value can close the script element.
    """
    text = fig.to_json(validate=False)
    text = text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026")
    return mark_safe(text)


def config() -> dict[str, Any]:
    """Plotly.js config for pages: no logo, no cloud links."""
    return {"displaylogo": False, "responsive": True}
