"""Sweeps and the goodput search (search logic on a model server; sweeps on the fake one)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from advisor.benchmarking.results import BenchmarkResult
from advisor.benchmarking.runner import BenchmarkConfigError, Limits, RunOptions, Target
from advisor.benchmarking.summary import Slo
from advisor.benchmarking.sweep import Evaluate, GoodputSearch, agoodput_search, asweep
from advisor.benchmarking.workloads import WorkloadSpec
from tests.advisor.benchmarking.fake_openai import MODEL, fake_server_thread

SLO = Slo(ttft_ms=500, min_attainment=0.9)
SPEC = WorkloadSpec("poisson", num_requests=10, rate_rps=1.0, prompt_tokens=8, output_tokens=4)
TARGET = Target("http://127.0.0.1:9", MODEL)


def _model_server(
    capacity_rps: float, seen: list[float], *, fail_at: float | None = None
) -> Evaluate:
    """A pretend server meeting the SLO up to `capacity_rps`."""

    async def evaluate(spec: WorkloadSpec) -> BenchmarkResult:
        rate = spec.rate_rps or 0.0
        seen.append(rate)
        failed = fail_at is not None and rate >= fail_at
        return BenchmarkResult(
            status="failed" if failed else "completed",
            error="node died" if failed else "",
            target={}, workload_name="", started_at_unix_s=0.0, duration_s=1.0, requests=(),
            summary={"slo_attainment": 1.0 if rate <= capacity_rps else 0.5},
        )  # fmt: skip

    return evaluate


def _search(evaluate: Evaluate, **kwargs: float) -> GoodputSearch:
    options: dict[str, Any] = {"min_rate_rps": 1.0, "max_rate_rps": 64.0, "rel_tol": 0.1}
    options.update(kwargs)
    return asyncio.run(agoodput_search(TARGET, SPEC, SLO, evaluate=evaluate, **options))


def test_it_doubles_then_bisects_to_the_highest_passing_rate() -> None:
    seen: list[float] = []
    search = _search(_model_server(7.3, seen))

    assert search.status == "completed"
    assert seen[:4] == [1.0, 2.0, 4.0, 8.0]
    assert search.best_rate_rps is not None
    assert 7.3 / 1.1 <= search.best_rate_rps <= 7.3
    assert "bracketed within 10%" in search.reason
    assert [p.meets_slo for p in search.probes] == [rate <= 7.3 for rate in seen]
    assert search.best is not None
    assert search.best.spec.rate_rps == search.best_rate_rps


def test_it_says_when_even_the_lowest_rate_misses() -> None:
    seen: list[float] = []
    search = _search(_model_server(0.5, seen))

    assert search.best_rate_rps is None
    assert seen == [1.0]
    assert "lowest rate" in search.reason


def test_it_stops_at_the_maximum_rate_when_that_still_passes() -> None:
    seen: list[float] = []
    search = _search(_model_server(1000.0, seen), max_rate_rps=10.0)

    assert seen == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert search.best_rate_rps == 10.0
    assert "max_rate_rps 10 meets" in search.reason


def test_it_spends_at_most_max_runs() -> None:
    seen: list[float] = []
    search = _search(_model_server(7.3, seen), rel_tol=0.001, max_runs=5)

    assert len(seen) == 5
    assert "max_runs" in search.reason


def test_it_stops_when_a_run_fails() -> None:
    seen: list[float] = []
    search = _search(_model_server(100.0, seen, fail_at=4.0))

    assert search.status == "failed"
    assert search.reason == "node died"
    assert seen == [1.0, 2.0, 4.0]
    assert search.best_rate_rps == 2.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_rate_rps": 0.0}, "min_rate_rps"),
        ({"min_rate_rps": 5.0, "max_rate_rps": 2.0}, "min_rate_rps"),
        ({"rel_tol": 1.5}, "rel_tol"),
        ({"max_runs": 0}, "max_runs"),
    ],
)
def test_it_names_a_bad_search_argument(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(BenchmarkConfigError, match=field):
        _search(_model_server(1.0, []), **kwargs)


def test_it_sweeps_concurrency_against_a_server() -> None:
    spec = WorkloadSpec("concurrency", num_requests=12, concurrency=1, prompt_tokens=8,
                        output_tokens=20)  # fmt: skip
    with fake_server_thread() as (url, server):
        server.behaviour.itl_s = 0.002
        sweep = asyncio.run(
            asweep(
                Target(url, MODEL), spec, "concurrency", [1, 4],
                limits=Limits(request_timeout_s=10, setup_timeout_s=5),
                options=RunOptions(warmup_requests=0, metrics_sample_s=0, slo=Slo(ttft_ms=5000)),
            )
        )  # fmt: skip

    assert sweep.status == "completed"
    assert [point.value for point in sweep.points] == [1.0, 4.0]
    assert [point.result.config["concurrency"] for point in sweep.points] == [1, 4]
    assert all(point.result.summary["completed"] == 12 for point in sweep.points)
    assert all(point.meets_slo for point in sweep.points)


def test_it_stops_a_sweep_at_a_dead_endpoint() -> None:
    sweep = asyncio.run(
        asweep(TARGET, SPEC, "rate", [1.0, 2.0, 4.0],
               limits=Limits(setup_timeout_s=2, connect_timeout_s=2))
    )  # fmt: skip

    assert sweep.status == "failed"
    assert len(sweep.points) == 1
    assert "127.0.0.1:9" in sweep.error
