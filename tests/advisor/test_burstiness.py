"""Burstiness: the gamma shape of rate-normalised gaps; the raw CV is another number."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.burstiness import burstiness_gamma_shape, inter_arrival_cv, requests_per_minute
from advisor.engine.workload import gamma_arrivals_s


@pytest.mark.parametrize("shape", [0.5, 1.0, 4.0])
def test_it_recovers_the_shape_vllm_bench_serve_was_given(shape: float) -> None:
    arrival = gamma_arrivals_s(
        np.random.default_rng(3), num_requests=20_000, rate_rps=5.0, burstiness=shape
    )
    per_minute = requests_per_minute(arrival, 0.0)
    assert burstiness_gamma_shape(arrival, per_minute, 0.0) == pytest.approx(shape, rel=0.1)


def test_a_daily_cycle_is_not_burstiness() -> None:
    # Poisson at 10 req/s for 30 minutes, then at 1 req/s: the raw gaps look bursty.
    rng = np.random.default_rng(4)
    fast = gamma_arrivals_s(rng, num_requests=18_000, rate_rps=10.0)
    slow = 1800.0 + gamma_arrivals_s(rng, num_requests=1_800, rate_rps=1.0)
    arrival = np.concatenate([fast[fast < 1800.0], slow])
    per_minute = requests_per_minute(arrival, 0.0)
    # gaps: 18,000 of mean 0.1 s and 1,800 of mean 1 s: CV = sqrt(0.2 / (3600/19800)^2 - 1)
    assert inter_arrival_cv(arrival) == pytest.approx(2.25, abs=0.1)
    assert burstiness_gamma_shape(arrival, per_minute, 0.0) == pytest.approx(1.0, rel=0.1)


def test_too_few_requests_give_no_estimate() -> None:
    arrival = np.arange(100, dtype=np.float64)
    assert burstiness_gamma_shape(arrival, requests_per_minute(arrival, 0.0), 0.0) is None
    assert inter_arrival_cv(np.array([0.0, 1.0])) is None
