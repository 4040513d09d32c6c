"""A benchmark job whose Celery worker dies or hangs mid-run ends failed with the reason.

A real worker process (its own broker key prefix, see `worker_app`; heartbeats every 0.2 s)
runs a job against the fake server. SIGKILLed once the job is running and has beaten,
nothing finishes the job and nothing beats for it any more; the reaper leaves it alone while
its heartbeat is fresh and fails it with the message once the threshold passed. On a
prefork worker (the pool production runs) a job queued with a hard time limit shorter than it
takes, as a hung job's is, has its child killed: nothing beats for it, the reaper fails it,
and the worker lives on and runs the next job.

Run: CI=true DATABASE_URL=postgres://... TEST_REDIS_URL=redis://.../N \
     .venv/bin/pytest tests/advisor/benchmarking/test_worker_lost.py
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.db import connection

from advisor.models import BenchmarkEndpoint
from advisor.services.benchmarks import benchmark_job_create
from advisor.services.reaper import lost_jobs_fail
from advisor.tasks.bench import run_benchmark_job
from tests.advisor.benchmarking.fake_openai import FakeServer
from tests.support.celery_worker import app_uses_broker, components_check, worker_env, worker_spawn

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
PREFIX = f"gca-reaper-test-{uuid.uuid4().hex[:8]}:"
HEARTBEAT_S = 0.2
# 50 s of arrivals: far longer than the test lets the worker live.
SLOW = {"kind": "poisson", "num_requests": 1000, "rate_rps": 20, "prompt_tokens": 8,
        "output_tokens": 10}  # fmt: skip
QUICK = {"kind": "concurrency", "num_requests": 4, "concurrency": 2, "prompt_tokens": 8,
         "output_tokens": 4}  # fmt: skip


@contextmanager
def _bench_worker(pool: str = "solo") -> Iterator[subprocess.Popen[bytes]]:
    """This module's own `celery worker -Q bench`, on the test database."""
    components_check()
    process = worker_spawn(
        app_module="tests.advisor.benchmarking.worker_app",
        queues="bench",
        log_name=f"reaper-worker-{pool}-{connection.settings_dict['NAME']}",
        env=worker_env(GCA_REAPER_TEST_PREFIX=PREFIX, GCA_REAPER_TEST_HEARTBEAT_S=str(HEARTBEAT_S)),
        node_name=f"reaper-test-{PREFIX}@%h",
        pool=pool,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()  # a warm shutdown also ends a prefork worker's child
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_it_fails_a_job_whose_worker_was_killed_mid_run(
    endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer]
) -> None:
    _url, server = fake_server
    server.behaviour.itl_s = 0.01
    with app_uses_broker(key_prefix=PREFIX), _bench_worker() as worker:
        job = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run", workload=SLOW)
        deadline = time.monotonic() + 60
        while True:  # running, and the worker's heartbeat has moved since the claim
            job.refresh_from_db()
            if job.status == "running" and job.heartbeat_at != job.started_at:
                break
            assert job.status in ("queued", "running"), job.error
            assert time.monotonic() < deadline, f"job {job.status}, never beat"
            time.sleep(0.05)
        assert lost_jobs_fail()["benchmark_jobs"] == 0  # alive: left alone

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    job.refresh_from_db()
    last = job.heartbeat_at
    assert last is not None
    time.sleep(10 * HEARTBEAT_S)

    job.refresh_from_db()
    assert (job.status, job.heartbeat_at) == ("running", last)  # nothing beats, nothing ends it
    assert server.requests > 0
    assert lost_jobs_fail(now=last + timedelta(seconds=599))["benchmark_jobs"] == 0

    assert lost_jobs_fail(now=last + timedelta(seconds=601)) == {
        "benchmark_jobs": 1,
        "assessments": 0,
    }
    job.refresh_from_db()
    assert job.status == "failed"
    since = last.astimezone(UTC).isoformat(timespec="seconds")
    assert job.error == f"worker lost: no heartbeat since {since} (threshold 600 s)"
    assert job.finished_at == last + timedelta(seconds=601)


def test_it_kills_a_job_past_its_time_limit_and_the_prefork_worker_runs_the_next(
    endpoint: BenchmarkEndpoint,
    fake_server: tuple[str, FakeServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _url, server = fake_server
    server.behaviour.itl_s = 0.01
    monkeypatch.setattr(run_benchmark_job, "apply_async_on_commit", lambda *a, **kw: None)
    stuck = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run", workload=SLOW)
    quick = benchmark_job_create(user=None, endpoint_id=endpoint.id, kind="run",
                                 workload=QUICK, options={"warmup_requests": 0})  # fmt: skip
    with app_uses_broker(key_prefix=PREFIX), _bench_worker("prefork") as worker:
        # a hard limit far below its 50 s of load, as `queue_benchmark_job` sets past the budget
        run_benchmark_job.apply_async((stuck.id,), time_limit=3)
        run_benchmark_job.apply_async((quick.id,))
        deadline = time.monotonic() + 90
        while quick.status in ("queued", "running"):
            assert time.monotonic() < deadline, f"next job still {quick.status} after 90 s"
            time.sleep(0.1)
            quick.refresh_from_db()
        assert worker.poll() is None  # the worker itself lives on
    stuck.refresh_from_db()

    assert quick.status == "completed", quick.error
    assert stuck.status == "running"  # killed mid-run: nothing ended it, nothing beats for it
    assert stuck.heartbeat_at is not None
    assert stuck.started_at is not None
    assert (stuck.heartbeat_at - stuck.started_at).total_seconds() < 10  # of its 50 s
    assert lost_jobs_fail(now=stuck.heartbeat_at + timedelta(seconds=601))["benchmark_jobs"] == 1
    stuck.refresh_from_db()
    assert stuck.status == "failed"
    assert stuck.error.startswith("worker lost: no heartbeat since ")
