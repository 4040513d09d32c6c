"""A/B by local restart (`advisor.benchmarking.ab.run_variants`) in a benchmark job.

The endpoint's `local_launch` points at the fake OpenAI server and a stand-in replaces the
vLLM process (its start and stop are recorded), so the job measures the fake server for each
variant without starting vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from advisor.benchmarking import ab, runner
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRequest, BenchmarkRun
from advisor.services.benchmarks import benchmark_job_create
from probes.agent.vllm_process import VllmLaunch
from tests.advisor.benchmarking.fake_openai import MODEL, FakeServer

WORKLOAD = {"kind": "concurrency", "num_requests": 12, "concurrency": 4, "prompt_tokens": 8,
            "output_tokens": 8}  # fmt: skip
AB = {"baseline_args": {"max_num_seqs": 1}, "candidate_args": {"max_num_seqs": 64},
      "label": "continuous batching"}  # fmt: skip


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """("start" | "stop", engine args) of each stand-in vLLM process, in order."""
    events: list[tuple[str, tuple[str, ...]]] = []

    class StandIn:
        """The fake server already serves: starting and stopping only record the call."""

        def __init__(self, launch: VllmLaunch, log_path: Path) -> None:
            self.engine_args = launch.engine_args

        def start(self, ready_timeout_s: float) -> None:
            events.append(("start", self.engine_args))

        def stop(self) -> None:
            events.append(("stop", self.engine_args))

    monkeypatch.setattr(ab, "VllmProcess", StandIn)
    return events


@pytest.fixture
def local(endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer]) -> BenchmarkEndpoint:
    """The endpoint, with a local launch on the fake server's port (no engine args of its own)."""
    port = urlsplit(fake_server[0]).port
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(
        local_launch={"python": "/no/python", "model": "fake/model", "port": port}
    )
    return endpoint


def _ab(endpoint: BenchmarkEndpoint) -> BenchmarkJob:
    job = benchmark_job_create(
        user=None, endpoint_id=endpoint.id, kind="ab", workload=WORKLOAD, ab=AB,
        options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()  # tasks run eagerly in tests: the job has run on commit
    return job


def test_it_measures_each_variant_after_a_restart(
    local: BenchmarkEndpoint, processes: list[tuple[str, tuple[str, ...]]]
) -> None:
    job = _ab(local)

    assert job.status == "completed", job.error
    assert job.result["ab"]["switched_by"] == "local restart"
    baseline, candidate = ("--max-num-seqs", "1"), ("--max-num-seqs", "64")
    assert processes == [("start", baseline), ("stop", baseline),
                         ("start", candidate), ("stop", candidate)]  # fmt: skip
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.summary["completed"]) for r in runs] == [
        ("baseline", "completed", 12),
        ("candidate", "completed", 12),
    ]


def test_it_keeps_the_baseline_and_stops_vllm_when_measuring_the_candidate_raises(
    local: BenchmarkEndpoint,
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_run_benchmark = runner.run_benchmark
    calls: list[str] = []

    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        calls.append("run")
        if len(calls) == 2:  # the candidate's measurement: a bug in the client
            raise ValueError("boom")
        return real_run_benchmark(*args, **kwargs)

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)

    job = _ab(local)

    error = "variant 'candidate': internal error: ValueError('boom')"
    assert job.status == "failed"
    assert job.error == error
    baseline, candidate = ("--max-num-seqs", "1"), ("--max-num-seqs", "64")
    assert processes == [("start", baseline), ("stop", baseline),
                         ("start", candidate), ("stop", candidate)]  # fmt: skip
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.error) for r in runs] == [
        ("baseline", "completed", ""),
        ("candidate", "failed", error),
    ]
    assert BenchmarkRequest.objects.filter(run=runs[0], status="ok").count() == 12
    assert runs[0].summary["completed"] == 12
    assert not BenchmarkRequest.objects.filter(run=runs[1]).exists()
    assert runs[1].summary["completed"] == 0
    assert "vllm_ready_after_s" not in runs[1].config
    result = job.result["ab"]
    assert (result["baseline_run_id"], result["candidate_run_id"]) == (runs[0].id, runs[1].id)
    (logged,) = [r for r in caplog.records if r.name == "advisor.benchmarking.ab"]
    assert logged.getMessage() == "A/B variant 'candidate' raised while it was measured"
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ValueError


def test_it_stores_the_variants_after_a_raising_one_unmeasured(
    local: BenchmarkEndpoint,
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("client bug")

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)

    job = _ab(local)

    error = "variant 'baseline': internal error: RuntimeError('client bug')"
    assert job.status == "failed"
    assert job.error == error
    baseline = ("--max-num-seqs", "1")
    assert processes == [("start", baseline), ("stop", baseline)]  # the candidate never started
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.error) for r in runs] == [
        ("baseline", "failed", error),
        ("candidate", "failed", f"not run: {error}"),
    ]
    assert not BenchmarkRequest.objects.filter(run__job=job).exists()


def test_it_lets_a_keyboard_interrupt_through_and_stops_vllm(
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)
    launch = VllmLaunch("/no/python", "fake/model", MODEL, port=8000)
    variants = [ab.Variant("baseline", ("--max-num-seqs", "1")), ab.Variant("candidate")]

    with pytest.raises(KeyboardInterrupt):
        ab.run_variants(
            launch, variants, WorkloadSpec.from_json(WORKLOAD).build(), log_dir=tmp_path
        )

    assert processes == [("start", ("--max-num-seqs", "1")), ("stop", ("--max-num-seqs", "1"))]
