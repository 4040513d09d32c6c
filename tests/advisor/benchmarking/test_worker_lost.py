"""A benchmark job whose Celery worker is SIGKILLed mid-run ends failed, "worker lost".

A real worker process (its own broker key prefix, see `worker_app`; heartbeats every 0.2 s)
runs a job against the fake server; once the job is running and has beaten, the worker is
SIGKILLed. Nothing finishes the job and nothing beats for it any more; the reaper leaves it
alone while its heartbeat is fresh and fails it with the message once the threshold passed.

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
from tests.advisor.benchmarking.fake_openai import FakeServer
from tests.support.celery_worker import app_uses_broker, components_check, worker_env, worker_spawn

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
PREFIX = f"gca-reaper-test-{uuid.uuid4().hex[:8]}:"
HEARTBEAT_S = 0.2
# 50 s of arrivals: far longer than the test lets the worker live.
SLOW = {"kind": "poisson", "num_requests": 1000, "rate_rps": 20, "prompt_tokens": 8,
        "output_tokens": 10}  # fmt: skip


@contextmanager
def _bench_worker() -> Iterator[subprocess.Popen[bytes]]:
    """This module's own `celery worker -Q bench`, on the test database."""
    components_check()
    process = worker_spawn(
        app_module="tests.advisor.benchmarking.worker_app",
        queues="bench",
        log_name=f"reaper-worker-{connection.settings_dict['NAME']}",
        env=worker_env(GCA_REAPER_TEST_PREFIX=PREFIX, GCA_REAPER_TEST_HEARTBEAT_S=str(HEARTBEAT_S)),
        node_name=f"reaper-test-{PREFIX}@%h",
    )
    try:
        yield process
    finally:
        if process.poll() is None:
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
