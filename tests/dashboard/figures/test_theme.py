"""Readable log axes: ticks in 1-2-5 steps (or per decade), each labelled in full."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from dashboard.figures.theme import log_axis, log_ticks


@pytest.mark.parametrize(
    ("values", "ticks"),
    [
        ([3.2, 700.0], ["2", "5", "10", "20", "50", "100", "200", "500", "1,000"]),
        ([0.0021, 0.9], ["0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]),
        # more than 3 decades: one tick per decade
        ([0.5, 5000.0], ["0.1", "1", "10", "100", "1,000", "10k"]),
        ([7e5, 3e6], ["500k", "1M", "2M", "5M"]),
        ([1.0, 1.0], ["1"]),
    ],
)
def test_it_labels_every_tick_in_full(values: list[float], ticks: list[str]) -> None:
    assert log_ticks(values)[1] == ticks


def test_it_skips_what_a_log_axis_cannot_show() -> None:
    assert log_ticks([0.0, -3.0, math.nan, None]) == ([], [])  # type: ignore[list-item]
    assert log_ticks([0.0, 20.0, math.inf, 40.0])[1] == ["20", "50"]


def test_it_sets_the_axis_type_and_ticks() -> None:
    fig = log_axis(go.Figure(), "x", [15.0, 80.0], title_text="tokens")
    axis = fig.layout.xaxis
    assert (axis.type, axis.title.text) == ("log", "tokens")
    assert list(axis.tickvals) == [10.0, 20.0, 50.0, 100.0]
    assert list(axis.ticktext) == ["10", "20", "50", "100"]
