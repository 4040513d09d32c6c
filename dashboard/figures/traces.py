"""Trace figures: arrival rate over time, length distributions, inter-arrival times."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.series import Line, lines
from dashboard.figures.theme import ACCENT, MUTED, SERIES, empty, log_axis, themed
from dashboard.selectors.traces import TraceStats

NO_REQUESTS = "No requests in this window"


def arrival_rate(stats: TraceStats) -> go.Figure:
    minutes = stats.bucket_s // 60
    per = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
    if not stats.request_count:
        return empty(NO_REQUESTS, title="Arrival rate")
    return lines(
        stats.rate_times,
        [Line("req/s", stats.rate_rps, color=ACCENT)],
        title=f"Arrival rate (per {per})",
        y_title="requests/s",
        y_format=".2f",
    )


def _log_histogram(values: np.ndarray, name: str, color: str) -> go.Bar | None:
    clean = values[~np.isnan(values)]
    clean = clean[clean > 0]
    if clean.size == 0:
        return None
    low, high = np.log10(clean.min()), np.log10(clean.max())
    edges = (
        np.logspace(low, high + 1e-9, 41)
        if high > low
        else np.array([clean.min(), clean.min() + 1])
    )
    counts, edges = np.histogram(clean, bins=edges)
    centers = np.sqrt(edges[:-1] * edges[1:])
    return go.Bar(
        x=centers.round(1), y=counts, name=name, marker_color=color, opacity=0.75,
        width=(edges[1:] - edges[:-1]) * 0.95,
        customdata=np.stack([edges[:-1], edges[1:]], axis=1).round(0),
        hovertemplate=f"{name} %{{customdata[0]:,.0f}}-%{{customdata[1]:,.0f}} tokens: "
        "%{y:,} requests<extra></extra>",
    )  # fmt: skip


def lengths(stats: TraceStats) -> go.Figure:
    title = "Prompt and output lengths"
    bars = [
        bar
        for bar in (
            _log_histogram(stats.prompt_tokens, "prompt", SERIES[0]),
            _log_histogram(stats.output_tokens, "output", SERIES[1]),
        )
        if bar is not None
    ]
    if not bars:
        return empty(NO_REQUESTS, title=title)
    fig = go.Figure(bars)
    fig.update_layout(barmode="overlay")
    tokens = np.concatenate([stats.prompt_tokens, stats.output_tokens])
    log_axis(fig, "x", tokens, title_text="tokens (log scale)")
    fig.update_yaxes(title_text="requests")
    return themed(fig, title=title)


def inter_arrivals(stats: TraceStats) -> go.Figure:
    """CDF of inter-arrival gaps against a Poisson process of the same mean rate."""
    title = "Inter-arrival times vs Poisson"
    gaps = np.sort(stats.inter_arrival_s)
    gaps = gaps[gaps >= 0]
    if gaps.size < 2 or gaps.mean() <= 0:
        return empty("Fewer than 3 requests", title=title)
    # At most 400 points: the CDF's shape, not every request.
    picks = np.unique(np.linspace(0, gaps.size - 1, min(400, gaps.size)).astype(np.int64))
    # Simultaneous arrivals (gap 0) count in the CDF but cannot sit on a log axis.
    picks = picks[gaps[picks] > 0]
    x = gaps[picks]
    if x.size == 0:
        return empty("All requests arrived at the same instant", title=title)
    observed = (picks + 1) / gaps.size
    poisson = 1.0 - np.exp(-x / gaps.mean())
    fig = go.Figure(
        [
            go.Scatter(x=x, y=observed, name="observed", mode="lines", line={"color": ACCENT}),
            go.Scatter(x=x, y=poisson, name="Poisson, same rate", mode="lines",
                       line={"color": MUTED, "dash": "dash"}),
        ]
    )  # fmt: skip
    log_axis(fig, "x", x, title_text="gap between arrivals (s, log scale)")
    fig.update_yaxes(title_text="share of gaps ≤ x", range=[0, 1])
    return themed(fig, title=title)
