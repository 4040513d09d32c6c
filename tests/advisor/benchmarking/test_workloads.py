"""Workload specs: built with the engine's generators, validated field by field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from advisor.benchmarking.workloads import WorkloadSpec, WorkloadSpecError
from advisor.engine.workload import Workload


def test_it_builds_a_seeded_poisson_workload() -> None:
    spec = WorkloadSpec("poisson", num_requests=500, rate_rps=20.0, prompt_tokens=64,
                        output_tokens=32)  # fmt: skip
    first, second = spec.build(), spec.build()

    assert first.num_requests == 500
    np.testing.assert_array_equal(first.arrival_s, second.arrival_s)
    assert first.mean_rate_rps == pytest.approx(20.0, rel=0.15)
    assert set(first.prompt_tokens.tolist()) == {64}
    assert first.max_concurrency is None


def test_it_builds_bursty_arrivals_with_a_lower_burstiness() -> None:
    smooth = WorkloadSpec("poisson", num_requests=2000, rate_rps=10.0, burstiness=4.0).build()
    bursty = WorkloadSpec("poisson", num_requests=2000, rate_rps=10.0, burstiness=0.25).build()

    def cv(workload: Workload) -> float:
        gaps = np.diff(workload.arrival_s)
        return float(gaps.std() / gaps.mean())

    # gamma inter-arrivals: coefficient of variation = 1 / sqrt(shape)
    assert cv(smooth) == pytest.approx(0.5, rel=0.15)
    assert cv(bursty) == pytest.approx(2.0, rel=0.2)


def test_it_builds_a_closed_loop() -> None:
    workload = WorkloadSpec("concurrency", num_requests=10, concurrency=4).build()

    assert workload.max_concurrency == 4
    assert workload.arrival_s.tolist() == [0.0] * 10


def test_it_replays_a_trace_time_scaled_or_at_a_rate() -> None:
    trace = Workload(np.array([5.0, 6.0, 8.0, 9.0]), np.array([10, 20, 30, 40]),
                     np.array([1, 2, 3, 4]), name="captured")  # fmt: skip

    halved = WorkloadSpec("replay", num_requests=None, time_scale=0.5).build(trace)
    assert halved.arrival_s.tolist() == [0.0, 0.5, 1.5, 2.0]
    assert halved.prompt_tokens.tolist() == [10, 20, 30, 40]

    at_rate = WorkloadSpec("replay", num_requests=3, rate_rps=4.0).build(trace)
    assert at_rate.num_requests == 3
    assert at_rate.mean_rate_rps == pytest.approx(4.0)

    more = WorkloadSpec("replay", num_requests=50, seed=3).build(trace)
    assert more.num_requests == 50
    assert set(more.prompt_tokens.tolist()) <= {10, 20, 30, 40}


def test_it_sweeps_one_field() -> None:
    spec = WorkloadSpec("poisson", rate_rps=1.0)

    assert spec.at_rate(8.0).rate_rps == 8.0
    assert spec.at_concurrency(16).concurrency == 16
    with pytest.raises(WorkloadSpecError, match="rate_rps"):
        WorkloadSpec("concurrency", concurrency=2).at_rate(3.0)


def test_it_round_trips_json_including_an_infinite_rate() -> None:
    spec = WorkloadSpec("poisson", rate_rps=math.inf, concurrency=8)

    assert spec.to_json()["rate_rps"] == "inf"
    assert WorkloadSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "zipf"}, "kind"),
        ({"num_requests": 3}, "kind"),
        ({"kind": "poisson"}, "rate_rps"),
        ({"kind": "poisson", "rate_rps": -1}, "rate_rps"),
        ({"kind": "poisson", "rate_rps": 1, "burstiness": 0}, "burstiness"),
        ({"kind": "concurrency"}, "concurrency"),
        ({"kind": "concurrency", "concurrency": 2, "num_requests": 0}, "num_requests"),
        ({"kind": "concurrency", "concurrency": 2, "prompt_tokens": 1.5}, "prompt_tokens"),
        ({"kind": "poisson", "rate_rps": 1, "range_ratio": 1.0}, "range_ratio"),
        ({"kind": "replay", "time_scale": 0}, "time_scale"),
        ({"kind": "replay", "colour": "red"}, "colour"),
    ],
)
def test_it_names_the_bad_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(WorkloadSpecError, match=field):
        WorkloadSpec.from_json(data)


def test_it_needs_a_trace_to_replay() -> None:
    with pytest.raises(WorkloadSpecError, match="trace"):
        WorkloadSpec("replay").build()
