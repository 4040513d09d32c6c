"""GPU figures for the node and GPU pages: utilization, memory, power, SM activity."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.series import Line, lines
from dashboard.figures.theme import MUTED
from dashboard.selectors.gpus import GpuSeries

GIB = 2**30
NO_SM = "SM activity not reported (needs DCGM or NVML GPM on the node)"


def _shared_times(series: list[GpuSeries]) -> tuple[list[str], list[np.ndarray]]:
    """Put every GPU on one time axis (union of their stamps), NaN where a GPU has no point."""
    stamps = np.unique(np.concatenate([s.epoch_s for s in series])) if series else np.zeros(0)
    index = {t: i for i, t in enumerate(stamps)}
    positions = [np.array([index[t] for t in s.epoch_s], dtype=np.int64) for s in series]
    times = [datetime.fromtimestamp(t, UTC).isoformat() for t in stamps]
    return times, positions


def _aligned(
    series: list[GpuSeries], name: str, scale: float = 1.0
) -> tuple[list[str], list[Line]]:
    times, positions = _shared_times(series)
    result = []
    for s, pos in zip(series, positions, strict=True):
        values = s.get(name)
        if values is None:
            continue
        full = np.full(len(times), np.nan)
        full[pos] = values / scale
        label = f"{s.gpu.node.hostname}:{s.gpu.index}"
        result.append(Line(label, full))
    return times, result


def utilization(series: list[GpuSeries]) -> go.Figure:
    if len(series) == 1:
        s = series[0]
        mean = s.get("util_mean_pct")
        band = [Line("mean", mean if mean is not None else np.zeros(0))]
        if s.resolution is not None:
            for name, label in (("util_p95_pct", "p95"), ("util_max_pct", "max")):
                values = s.get(name)
                if values is not None:
                    band.append(Line(label, values, dash="dot"))
        return lines(s.times, band, title="Utilization", y_title="%", y_range=(0, 100))
    times, aligned = _aligned(series, "util_mean_pct")
    return lines(times, aligned, title="Utilization (mean)", y_title="%", y_range=(0, 100))


def memory(series: list[GpuSeries]) -> go.Figure:
    times, aligned = _aligned(series, "mem_mean_bytes", scale=GIB)
    fig = lines(times, aligned, title="Memory used", y_title="GiB", y_format=".1f")
    capacity = max((s.gpu.memory_bytes for s in series), default=0) / GIB
    if aligned and capacity:
        fig.add_hline(
            y=capacity,
            line_dash="dash",
            line_color=MUTED,
            annotation_text=f"{capacity:.0f} GiB",
            annotation_position="top left",
        )
    return fig


def power(series: list[GpuSeries]) -> go.Figure:
    times, aligned = _aligned(series, "power_w")
    return lines(times, aligned, title="Power", y_title="W", missing="Power not reported")


def sm_activity(series: list[GpuSeries]) -> go.Figure:
    if len(series) == 1:
        s = series[0]
        found = [
            Line(label, values * 100)
            for name, label in (("sm_active", "SM active"), ("tensor_active", "tensor active"))
            if (values := s.get(name)) is not None
        ]
        return lines(s.times, found, title="SM activity", y_title="%", y_range=(0, 100),
                     missing=NO_SM)  # fmt: skip
    times, aligned = _aligned(series, "sm_active", scale=0.01)
    return lines(times, aligned, title="SM active", y_title="%", y_range=(0, 100), missing=NO_SM)
