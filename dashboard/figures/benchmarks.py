"""Benchmark figures: predicted vs measured (parity), the sweep curves, prediction errors."""

from __future__ import annotations

import plotly.graph_objects as go

from dashboard.figures.theme import MUTED, SERIES, empty, log_axis, themed
from dashboard.selectors.benchmarks import COMPARED, RunView

NO_PREDICTION = "No run has both a measurement and the engine's prediction"


def parity(runs: list[RunView], *, title: str = "Predicted vs measured") -> go.Figure:
    """One point per run and figure: measured (x) against the engine's prediction (y).

    Figures have different units, so each is drawn relative to its own measurement: the
    y = x line is a perfect prediction, the band ±20%.
    """
    fig = go.Figure()
    drawn = 0
    for i, (name, label, unit) in enumerate(COMPARED):
        xs, ys, texts = [], [], []
        for run in runs:
            point = run.figure(name)
            if point["measured"] is None or point["predicted"] is None or point["measured"] <= 0:
                continue
            xs.append(point["measured"])
            ys.append(point["predicted"])
            error = point["error"]
            texts.append(f"{run.label}: {error:+.1%}" if error is not None else run.label)
        if not xs:
            continue
        drawn += len(xs)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers", name=f"{label} ({unit})", text=texts,
                marker={"color": SERIES[i % len(SERIES)], "size": 9},
                hovertemplate="%{text}<br>measured %{x:,.3g}<br>predicted %{y:,.3g}"
                f"<extra>{label}</extra>",
            )
        )  # fmt: skip
    if not drawn:
        return empty(NO_PREDICTION, title=title)
    values = [v for trace in fig.data for v in (*trace.x, *trace.y) if v and v > 0]
    low, high = min(values) / 1.5, max(values) * 1.5
    fig.add_trace(
        go.Scatter(x=[low, high], y=[low, high], mode="lines", name="perfect",
                   line={"color": MUTED, "dash": "dash"}, hoverinfo="skip")
    )  # fmt: skip
    for factor in (0.8, 1.2):
        fig.add_trace(
            go.Scatter(x=[low, high], y=[low * factor, high * factor], mode="lines",
                       line={"color": MUTED, "width": 0.5, "dash": "dot"}, showlegend=False,
                       hoverinfo="skip")
        )  # fmt: skip
    log_axis(fig, "x", values, title_text="measured (each figure in its unit)")
    log_axis(fig, "y", values, title_text="predicted by the engine")
    return themed(fig, title=title, height=380)


def errors(runs: list[RunView]) -> go.Figure:
    """The prediction error of each figure, per run (predicted / measured - 1)."""
    title = "Prediction error per figure"
    fig = go.Figure()
    for i, run in enumerate(runs):
        points = [(label, run.figure(name)["error"]) for name, label, _ in COMPARED]
        known = [(label, e) for label, e in points if e is not None]
        if not known:
            continue
        fig.add_trace(
            go.Bar(
                x=[label for label, _ in known], y=[e * 100 for _, e in known], name=run.label,
                marker_color=SERIES[i % len(SERIES)],
                hovertemplate="%{x}: %{y:+.1f}%<extra>" + run.label + "</extra>",
            )
        )  # fmt: skip
    if not fig.data:
        return empty(NO_PREDICTION, title=title)
    fig.update_layout(barmode="group", showlegend=len(fig.data) > 1)
    fig.update_yaxes(title_text="error % (+: engine predicted more)", zeroline=True)
    return themed(fig, title=title, height=300)


def sweep(runs: list[RunView], *, over: str) -> go.Figure:
    """Throughput and median TTFT against the swept value: measured solid, predicted dashed."""
    title = f"Measured and predicted across {over}"
    points = sorted((r for r in runs if r.run.value is not None), key=lambda r: r.run.value or 0)
    if len(points) < 2:
        return empty("Fewer than two sweep points", title=title)
    x = [r.run.value for r in points]
    fig = go.Figure()
    for name, label, axis, color in (
        ("output_throughput", "output tok/s", "y", SERIES[0]),
        ("median_ttft_ms", "TTFT p50 ms", "y2", SERIES[1]),
    ):
        for which, dash in (("measured", "solid"), ("predicted", "dash")):
            fig.add_trace(
                go.Scatter(
                    x=x, y=[r.figure(name)[which] for r in points], name=f"{label} {which}",
                    mode="lines+markers", line={"color": color, "dash": dash}, yaxis=axis,
                )
            )  # fmt: skip
    fig.update_layout(
        yaxis={"title": {"text": "output tokens/s"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "TTFT p50 (ms)"}, "overlaying": "y", "side": "right",
                "rangemode": "tozero", "showgrid": False},
    )  # fmt: skip
    fig.update_xaxes(title_text=over)
    fig = themed(fig, title=title, height=320)
    fig.update_layout(margin={"r": 64})  # room for the right axis' title
    return fig


def compare(runs: list[RunView]) -> go.Figure:
    """Runs side by side: output throughput (bars) and TTFT/TPOT p99 (markers)."""
    title = "Runs compared"
    if not runs:
        return empty("Pick runs to compare", title=title)
    labels = [r.label for r in runs]
    fig = go.Figure(
        [
            go.Bar(x=labels, y=[r.figure("output_throughput")["measured"] for r in runs],
                   name="output tok/s", marker_color=SERIES[0]),
            go.Scatter(x=labels, y=[r.figure("p99_ttft_ms")["measured"] for r in runs],
                       name="TTFT p99 ms", mode="markers", yaxis="y2",
                       marker={"color": SERIES[1], "size": 11, "symbol": "diamond"}),
            go.Scatter(x=labels, y=[r.figure("p99_tpot_ms")["measured"] for r in runs],
                       name="TPOT p99 ms", mode="markers", yaxis="y2",
                       marker={"color": SERIES[2], "size": 11}),
        ]
    )  # fmt: skip
    fig.update_layout(
        yaxis={"title": {"text": "output tokens/s"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "ms"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                "showgrid": False},
    )  # fmt: skip
    fig = themed(fig, title=title, height=320)
    fig.update_layout(margin={"r": 64})
    return fig
