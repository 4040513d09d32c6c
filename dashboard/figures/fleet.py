"""Fleet overview figures: utilization heatmap, where the idle money goes, the distribution."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.theme import ACCENT, BAD, MUTED, UTIL_SCALE, empty, themed
from dashboard.formatting import usd
from dashboard.selectors.fleet import FleetOverview
from probes.models import IDLE_UTIL_PCT

ROW_PX = 9


def utilization_heatmap(overview: FleetOverview) -> go.Figure:
    """GPU x time, colour = mean utilization of the cell; gaps are missing telemetry."""
    heat = overview.heatmap
    title = "Utilization by GPU over time"
    if not heat.gpu_ids or np.isnan(heat.util_pct).all():
        return empty("No GPU rollups in this window", title=title)
    minutes = heat.column_s // 60
    cell = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
    fig = go.Figure(
        go.Heatmap(
            z=heat.util_pct,
            x=[ts.isoformat() for ts in heat.column_starts],
            y=list(heat.gpu_labels),
            zmin=0,
            zmax=100,
            colorscale=UTIL_SCALE,
            colorbar={"title": {"text": "util %"}, "thickness": 12},
            hovertemplate="%{y}<br>%{x}<br>%{z:.1f}% util<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_layout(meta={"ids": list(heat.gpu_ids)})
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont={"size": 10}, automargin=True)
    fig.update_xaxes(showgrid=False)
    height = max(260, min(1800, 90 + ROW_PX * len(heat.gpu_ids)))
    return themed(fig, title=f"{title} (cell = {cell})", height=height)


def idle_cost_bars(overview: FleetOverview) -> go.Figure:
    """The GPUs with the most idle cost (or idle hours when no price is known)."""
    wastes = [gpu for gpu in overview.wastes if gpu.idle_hours > 0]
    title = "Biggest idle wastes"
    if not wastes:
        return empty(f"No GPU sat below {IDLE_UTIL_PCT:.0f}% for a whole minute", title=title)
    priced = any(gpu.idle_cost_usd is not None for gpu in wastes)
    labels = [gpu.label for gpu in wastes][::-1]
    if priced:
        values = [gpu.idle_cost_usd or 0.0 for gpu in wastes][::-1]
        colors = [BAD if gpu.idle_cost_usd is not None else MUTED for gpu in wastes][::-1]
        text = [
            usd(gpu.idle_cost_usd) if gpu.idle_cost_usd is not None else "no price"
            for gpu in wastes
        ][::-1]
        axis = "idle cost (USD)"
    else:
        values = [gpu.idle_hours for gpu in wastes][::-1]
        colors = [MUTED] * len(values)
        text = [f"{gpu.idle_hours:,.1f} h" for gpu in wastes][::-1]
        axis = "idle GPU-hours (no prices)"
    fig = go.Figure(
        go.Bar(
            x=values, y=labels, orientation="h", marker_color=colors, text=text,
            textposition="auto", hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(meta={"ids": [gpu.gpu_id for gpu in wastes][::-1]})
    fig.update_xaxes(title_text=axis)
    fig.update_yaxes(automargin=True)
    return themed(fig, title=title, height=max(220, 60 + 26 * len(labels)))


def utilization_histogram(overview: FleetOverview) -> go.Figure:
    """How GPU time is spread over utilization levels (every GPU-bucket of the window)."""
    counts = overview.util_histogram
    title = "Distribution of GPU utilization"
    if counts.sum() == 0:
        return empty("No GPU rollups in this window", title=title)
    edges = np.linspace(0.0, 100.0, 21)
    share = counts / counts.sum() * 100.0
    colors = [BAD if edge < IDLE_UTIL_PCT else ACCENT for edge in edges[:-1]]
    fig = go.Figure(
        go.Bar(
            x=(edges[:-1] + 2.5).round(1), y=share.round(2), width=4.6, marker_color=colors,
            customdata=np.stack([edges[:-1], edges[1:]], axis=1),
            hovertemplate="%{customdata[0]:.0f}-%{customdata[1]:.0f}% util: "
            "%{y:.1f}% of GPU time<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title_text="utilization %", range=[0, 100])
    fig.update_yaxes(title_text="% of GPU-buckets")
    return themed(fig, title=title, height=260)
