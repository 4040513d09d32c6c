"""Time-series figures shared by the GPU, node and deployment pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.theme import empty, themed


@dataclass(frozen=True)
class Line:
    name: str
    values: np.ndarray
    dash: str = "solid"
    color: str | None = None
    fill_to_previous: bool = False


def lines(
    times: Sequence[str],
    series: Sequence[Line],
    *,
    title: str,
    y_title: str,
    y_range: tuple[float, float] | None = None,
    missing: str = "No data in this window",
    height: int = 280,
    y_format: str = ".1f",
) -> go.Figure:
    """One line per series against time; gaps in the data stay gaps (NaN)."""
    drawable = [s for s in series if s.values.size and not np.isnan(s.values).all()]
    if not times or not drawable:
        return empty(missing, title=title, height=height)
    fig = go.Figure()
    for s in drawable:
        fig.add_trace(
            go.Scatter(
                x=list(times), y=s.values.astype(np.float32), name=s.name, mode="lines",
                line={"dash": s.dash, "width": 1.6, **({"color": s.color} if s.color else {})},
                fill="tonexty" if s.fill_to_previous else None, connectgaps=False,
                hovertemplate=f"%{{y:{y_format}}}<extra>{s.name}</extra>",
            )
        )  # fmt: skip
    fig.update_yaxes(
        title_text=y_title, **({"range": list(y_range)} if y_range else {"rangemode": "tozero"})
    )
    fig.update_layout(hovermode="x unified", showlegend=len(drawable) > 1)
    return themed(fig, title=title, height=height)
