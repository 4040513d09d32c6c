"""vLLM engine figures for the deployment page: queue, KV cache, rates, latency percentiles."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.series import Line, lines
from dashboard.figures.theme import BAD, SERIES, log_axis
from dashboard.selectors.engine import EngineSeries

NO_ENGINE = "No vLLM metrics in this window (agent's vLLM sampler or Prometheus source)"


def queue(s: EngineSeries) -> go.Figure:
    return lines(
        s.times,
        [
            Line("running", s.values["running_mean"], color=SERIES[0]),
            Line("waiting", s.values["waiting_mean"], color=BAD),
            Line("waiting (max)", s.values["waiting_max"], color=BAD, dash="dot"),
        ],
        title="Requests running / waiting (all servers)",
        y_title="requests",
        missing=NO_ENGINE,
    )


def kv_cache(s: EngineSeries) -> go.Figure:
    return lines(
        s.times,
        [
            Line("mean", s.values["kv_cache_usage_mean"] * 100),
            Line("max", s.values["kv_cache_usage_max"] * 100, dash="dot"),
        ],
        title="KV cache usage",
        y_title="%",
        y_range=(0, 100),
        missing="KV cache usage not reported",
    )


def rates(s: EngineSeries) -> go.Figure:
    return lines(
        s.times,
        [Line("requests/s", s.rate_per_s("requests"))],
        title="Request rate (finished requests)",
        y_title="req/s",
        y_format=".2f",
        missing=NO_ENGINE,
    )


def tokens(s: EngineSeries) -> go.Figure:
    return lines(
        s.times,
        [
            Line("prompt tokens/s", s.rate_per_s("prompt_tokens")),
            Line("generated tokens/s", s.rate_per_s("generation_tokens")),
        ],
        title="Token throughput",
        y_title="tokens/s",
        y_format=",.0f",
        missing=NO_ENGINE,
    )


def latency(s: EngineSeries) -> go.Figure:
    series = [
        Line(label, s.values[name] * 1000.0, dash=dash, color=color)
        for name, label, dash, color in (
            ("ttft_p50_s", "TTFT p50", "solid", SERIES[0]),
            ("ttft_p99_s", "TTFT p99", "dot", SERIES[0]),
            ("e2e_p50_s", "E2E p50", "solid", SERIES[1]),
            ("e2e_p99_s", "E2E p99", "dot", SERIES[1]),
            ("itl_p50_s", "ITL p50", "solid", SERIES[2]),
            ("itl_p99_s", "ITL p99", "dot", SERIES[2]),
        )
    ]
    fig = lines(
        s.times, series, title="Latency percentiles per bucket", y_title="ms (log scale)",
        y_format=",.0f", missing="No latency percentiles in this window",
    )  # fmt: skip
    drawn = [line.values for line in series if line.values.size]
    if any(not np.isnan(values).all() for values in drawn):
        log_axis(fig, "y", np.concatenate(drawn))
    return fig
