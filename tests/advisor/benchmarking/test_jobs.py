"""Benchmark jobs end to end on the fake server: stored runs, requests, telemetry, kinds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection

from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRequest, BenchmarkRun
from advisor.services import benchmark_runs
from advisor.services.benchmark_runs import job_time_budget_s
from advisor.services.benchmarks import (
    BenchmarkJobError,
    benchmark_job_cancel,
    benchmark_job_create,
)
from advisor.tasks.bench import run_benchmark_job
from probes.models import Gpu, GpuSample, RequestRecord, RequestSource
from tests.advisor.benchmarking.fake_openai import FakeServer
from tests.support.components import free_port

CLOSED = {"kind": "concurrency", "num_requests": 20, "concurrency": 4, "prompt_tokens": 16,
          "output_tokens": 8}  # fmt: skip


def _create(endpoint: BenchmarkEndpoint, **kwargs: Any) -> BenchmarkJob:
    kwargs.setdefault("kind", "run")
    kwargs.setdefault("workload", CLOSED)
    kwargs.setdefault("options", {"warmup_requests": 0})
    job = benchmark_job_create(user=None, endpoint_id=endpoint.id, **kwargs)
    job.refresh_from_db()  # tasks run eagerly in tests: the job has run on commit
    return job


def test_it_runs_a_job_and_stores_every_request(endpoint: BenchmarkEndpoint) -> None:
    job = _create(endpoint)

    assert job.status == "completed", job.error
    assert job.progress == 1.0
    run = BenchmarkRun.objects.get(job=job)
    assert job.result == {"run_id": run.id}
    assert run.status == "completed"
    assert run.summary["completed"] == 20
    assert run.summary["total_output_tokens"] == 20 * 8
    assert run.prompts is not None
    assert run.prompts["mode"] == "token_ids"
    assert run.server_metrics["generation_tokens"] == 20 * 8
    rows = list(BenchmarkRequest.objects.filter(run=run).order_by("index"))
    assert [row.index for row in rows] == list(range(20))
    assert all(row.status == "ok" and len(row.itl_s) == 7 for row in rows)
    assert all(row.prompt_tokens == 16 and row.output_tokens == 8 for row in rows)


def test_it_keeps_the_gpu_telemetry_of_the_measured_window(
    endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer]
) -> None:
    _url, server = fake_server
    server.behaviour.itl_s = 0.02  # a run of about a second
    gpu = Gpu.objects.get(node=endpoint.node)
    now = datetime.now(UTC)
    GpuSample.objects.bulk_create(
        GpuSample(gpu=gpu, ts=now + timedelta(seconds=i / 10), util_pct=float(i % 100),
                  mem_used_bytes=1000 + i, power_w=300.0)
        for i in range(-100, 600)
    )  # fmt: skip
    job = _create(endpoint, workload={**CLOSED, "output_tokens": 20})

    run = BenchmarkRun.objects.get(job=job)
    end = run.started_at + timedelta(seconds=run.duration_s)
    inside = GpuSample.objects.filter(gpu=gpu, ts__gte=run.started_at, ts__lt=end)
    expected = [sample.util_pct for sample in inside]
    assert run.gpu_telemetry["samples"] == len(expected) > 0
    assert run.gpu_telemetry["util_mean_pct"] == pytest.approx(sum(expected) / len(expected))
    assert run.gpu_telemetry["mem_used_max_bytes"] == max(s.mem_used_bytes for s in inside)
    assert run.gpu_telemetry["gpus"] == 1


def test_it_says_when_no_gpu_samples_cover_the_run(endpoint: BenchmarkEndpoint) -> None:
    job = _create(endpoint)

    telemetry = BenchmarkRun.objects.get(job=job).gpu_telemetry
    assert telemetry["samples"] == 0
    assert "no GPU samples" in telemetry["note"]


def test_it_stores_the_engines_prediction_and_its_error(endpoint: BenchmarkEndpoint) -> None:
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(hardware="H100-SXM",
                                                            model_ref="Llama-3-8B")  # fmt: skip
    job = _create(endpoint)

    run = BenchmarkRun.objects.get(job=job)
    figures = run.predicted["figures"]
    assert figures["output_throughput"] > 0
    assert run.predicted["calibration_record_id"] is None  # the built-in profile was used
    assert run.predicted["profile_source"]
    error = run.prediction_error["output_throughput"]
    assert error["measured"] == run.summary["output_throughput"]
    assert error["error"] == pytest.approx(error["predicted"] / error["measured"] - 1)


def test_it_keeps_the_measured_run_when_the_engine_raises(
    endpoint: BenchmarkEndpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(hardware="H100-SXM",
                                                            model_ref="Llama-3-8B")  # fmt: skip

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(benchmark_runs, "predict", broken)
    job = _create(endpoint)

    assert job.status == "completed", job.error
    run = BenchmarkRun.objects.get(job=job)
    assert run.summary["completed"] == 20
    assert run.predicted["error"] == (
        "internal error in the engine's prediction: ZeroDivisionError('boom')"
    )
    assert run.predicted["profile_source"]
    assert run.prediction_error == {}
    assert "the engine's prediction raised" in caplog.text
    assert "ZeroDivisionError: boom" in caplog.text  # the traceback is logged


def test_it_says_why_there_is_no_prediction(endpoint: BenchmarkEndpoint) -> None:
    job = _create(endpoint)

    assert "hardware" in BenchmarkRun.objects.get(job=job).predicted["error"]


def test_it_sweeps_and_stores_one_run_per_point(endpoint: BenchmarkEndpoint) -> None:
    job = _create(endpoint, kind="sweep", sweep={"over": "concurrency", "values": [1, 4]},
                  slo={"ttft_ms": 10_000})  # fmt: skip

    assert job.status == "completed", job.error
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [run.label for run in runs] == ["concurrency 1", "concurrency 4"]
    assert [run.config["concurrency"] for run in runs] == [1, 4]
    assert [p["run_id"] for p in job.result["sweep"]["points"]] == [run.id for run in runs]
    assert all(run.meets_slo for run in runs)


def test_it_searches_goodput_and_keeps_every_probe(endpoint: BenchmarkEndpoint) -> None:
    job = _create(
        endpoint, kind="goodput",
        workload={"kind": "poisson", "num_requests": 10, "rate_rps": 1, "prompt_tokens": 8,
                  "output_tokens": 4},
        slo={"ttft_ms": 10_000}, goodput={"min_rate_rps": 20, "max_rate_rps": 80},
    )  # fmt: skip

    assert job.status == "completed", job.error
    goodput = job.result["goodput"]
    assert [p["value"] for p in goodput["probes"]] == [20.0, 40.0, 80.0]
    assert goodput["best_rate_rps"] == 80.0
    assert "max_rate_rps 80 meets" in goodput["reason"]
    assert BenchmarkRun.objects.filter(job=job).count() == 3


def test_it_replays_the_deployments_recorded_requests(endpoint: BenchmarkEndpoint) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    RequestRecord.objects.bulk_create(
        RequestRecord(deployment=endpoint.deployment, arrival_ts=start + timedelta(seconds=i / 10),
                      prompt_tokens=10 + i, output_tokens=3 + i % 4, source=RequestSource.PROXY)
        for i in range(8)
    )  # fmt: skip
    job = _create(
        endpoint,
        workload={"kind": "replay", "num_requests": None, "time_scale": 0.5},
        trace={"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
    )

    assert job.status == "completed", job.error
    rows = list(BenchmarkRequest.objects.filter(run__job=job).order_by("index"))
    assert [row.scheduled_s for row in rows] == pytest.approx([i / 20 for i in range(8)])
    assert [row.prompt_tokens for row in rows] == [10 + i for i in range(8)]
    assert [row.output_tokens for row in rows] == [3 + i % 4 for i in range(8)]


def test_it_fails_the_job_with_the_error_when_the_endpoint_is_dead(
    transactional_db: Any,
) -> None:
    from tests.advisor.benchmarking.conftest import make_endpoint

    dead = make_endpoint(f"http://127.0.0.1:{free_port()}")
    job = _create(dead)

    assert job.status == "failed"
    assert dead.base_url in job.error
    run = BenchmarkRun.objects.get(job=job)
    assert run.status == "failed"
    assert BenchmarkRequest.objects.filter(run=run, status="not_sent").count() == 20


@pytest.fixture
def not_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs stay queued (the test runs the task itself, when it wants)."""
    monkeypatch.setattr(run_benchmark_job, "apply_async_on_commit", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("not_queued")
def test_it_cancels_a_queued_job_before_it_runs(endpoint: BenchmarkEndpoint) -> None:
    job = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run", workload=CLOSED)
    benchmark_job_cancel(job_id=job.id)

    assert run_benchmark_job(job.id).startswith("not queued")
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert not BenchmarkRun.objects.filter(job=job).exists()
    with pytest.raises(BenchmarkJobError, match="already finished"):
        benchmark_job_cancel(job_id=job.id)


@pytest.mark.usefixtures("not_queued")
def test_it_stops_a_running_job_when_cancelled(
    endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer]
) -> None:
    _url, server = fake_server
    server.behaviour.itl_s = 0.01
    workload = {"kind": "poisson", "num_requests": 200, "rate_rps": 20, "prompt_tokens": 8,
                "output_tokens": 10}  # 10 s of arrivals  # fmt: skip
    job = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run", workload=workload)

    def work() -> None:
        try:
            run_benchmark_job(job.id)
        finally:
            connection.close()  # this thread's own connection

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while BenchmarkJob.objects.get(id=job.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    benchmark_job_cancel(job_id=job.id)
    worker.join(30)

    job.refresh_from_db()
    assert job.status == "cancelled"
    statuses = list(BenchmarkRequest.objects.filter(run__job=job).values_list("status", flat=True))
    assert statuses.count("ok") > 5
    assert statuses.count("not_sent") > 100


def test_it_queues_a_job_with_its_time_budget_as_the_time_limits(
    endpoint: BenchmarkEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(
        run_benchmark_job, "apply_async_on_commit", lambda args, **kw: queued.append((args, kw))
    )
    job = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run", workload=CLOSED,
                               options={"warmup_requests": 2}, max_duration_s=50)  # fmt: skip

    # setup 4 x 30 s + 2 warm-ups x 900 s + 50 s cap + storing 300 s, then the job's own 300 s
    assert job_time_budget_s(job) == 4 * 30 + 2 * 900 + 50 + 300 + 300
    assert queued == [((job.id,), {"time_limit": 2570.0 + 60})]  # killed a minute past it


@pytest.mark.usefixtures("not_queued")
def test_it_budgets_every_run_of_a_sweep_a_goodput_search_and_an_ab(
    endpoint: BenchmarkEndpoint,
) -> None:
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(
        local_launch={"python": "/no/python", "model": "m", "port": 1, "ready_timeout_s": 700}
    )
    create = partial(benchmark_job_create, user=None, endpoint_id=endpoint.id,
                     options={"warmup_requests": 0}, max_duration_s=30)  # fmt: skip
    run_s = 4 * 30 + 30 + 300
    poisson = {"kind": "poisson", "num_requests": 20, "rate_rps": 2, "prompt_tokens": 8,
               "output_tokens": 8}  # fmt: skip

    sweep = create(kind="sweep", workload=CLOSED, sweep={"over": "concurrency",
                                                         "values": [1, 2, 4]})  # fmt: skip
    goodput = create(kind="goodput", workload=poisson, slo={"ttft_ms": 100},
                     goodput={"min_rate_rps": 1, "max_rate_rps": 8, "max_runs": 5})  # fmt: skip
    ab = create(kind="ab", workload=CLOSED, ab={"candidate_args": {"max_num_seqs": 4}})

    assert job_time_budget_s(sweep) == 3 * run_s + 300
    assert job_time_budget_s(goodput) == 5 * run_s + 300
    # three switches (baseline, candidate, original back), each the longer of the
    # controller's apply timeout (600 s) and this endpoint's local ready timeout
    assert job_time_budget_s(ab) == 2 * run_s + 3 * 700 + 300


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"endpoint_id": 999_999}, "endpoint"),
        ({"endpoint_id": "1"}, "endpoint"),
        ({"kind": "stress"}, "kind"),
        ({"workload": {"kind": "poisson"}}, "workload.rate_rps"),
        ({"workload": {**CLOSED, "concurrency": 0}}, "workload.concurrency"),
        ({"workload": {**CLOSED, "num_requests": 5000}}, "workload.num_requests"),
        ({"workload": {**CLOSED, "colour": 1}}, "workload.colour"),
        ({"max_concurrency": 65}, "max_concurrency"),
        ({"max_duration_s": 0}, "max_duration_s"),
        ({"slo": {"ttft_ms": -1}}, "slo.ttft_ms"),
        ({"slo": {"p95": 1}}, "slo.p95"),
        ({"options": {"prompt_mode": "magic"}}, "options.prompt_mode"),
        ({"options": {"sampling": {"stream": False}}}, "options.sampling.stream"),
        ({"options": {"warmup_requests": -1}}, "options.warmup_requests"),
        ({"kind": "sweep"}, "sweep"),
        ({"kind": "sweep", "sweep": {"over": "rate", "values": [1]}}, "sweep.over"),
        (
            {"kind": "sweep", "sweep": {"over": "concurrency", "values": [1, 2.5]}},
            "sweep.values[1]",
        ),
        ({"kind": "goodput", "goodput": {"min_rate_rps": 1, "max_rate_rps": 2}}, "slo"),
        ({"kind": "ab", "ab": {"baseline_args": {}, "candidate_args": {}}}, "ab"),
        ({"sweep": {"over": "concurrency", "values": [1]}}, "sweep"),
        (
            {
                "workload": {"kind": "replay"},
                "trace": {"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"},
            },
            "trace",
        ),
        (
            {"workload": {"kind": "replay"}, "trace": {"start": "yesterday", "end": "now"}},
            "trace.start",
        ),
    ],
)
def test_it_names_the_bad_field_and_stores_nothing(
    endpoint: BenchmarkEndpoint, kwargs: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {"endpoint_id": endpoint.id, "kind": "run", "workload": CLOSED}
    arguments.update(kwargs)
    with pytest.raises(BenchmarkJobError) as caught:
        benchmark_job_create(user=None, **arguments)

    assert caught.value.field == field
    assert not BenchmarkJob.objects.exists()
