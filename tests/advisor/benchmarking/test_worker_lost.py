"""A benchmark job whose Celery worker is SIGKILLed mid-run ends failed, "worker lost".

A real worker process (its own broker key prefix, see `worker_app`; heartbeats every 0.2 s)
runs a job against the fake server; once the job is running and has beaten, the worker is
SIGKILLed. Nothing finishes the job and nothing beats for it any more; the reaper leaves it
alone while its heartbeat is fresh and fails it with the message once the threshold passed.

Run: CI=true DATABASE_URL=postgres://... TEST_REDIS_URL=redis://.../N \
     .venv/bin/pytest tests/advisor/benchmarking/test_worker_lost.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection

from advisor.models import BenchmarkEndpoint
from advisor.services.benchmarks import benchmark_job_create
from advisor.services.reaper import lost_jobs_fail
from config.celery import app
from tests.advisor.benchmarking.fake_openai import FakeServer
from tests.support.celery_worker import _forget_connections
from tests.support.components import REDIS_URL, missing

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
PREFIX = f"gca-reaper-test-{uuid.uuid4().hex[:8]}:"
HEARTBEAT_S = 0.2
# 50 s of arrivals: far longer than the test lets the worker live.
SLOW = {"kind": "poisson", "num_requests": 1000, "rate_rps": 20, "prompt_tokens": 8,
        "output_tokens": 10}  # fmt: skip


@contextmanager
def _broker_with_prefix() -> Iterator[None]:
    keys = ("broker_url", "result_backend", "task_always_eager", "broker_transport_options")
    previous = {key: app.conf[key] for key in keys}
    app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL, task_always_eager=False,
                    broker_transport_options={"global_keyprefix": PREFIX})  # fmt: skip
    _forget_connections()
    try:
        yield
    finally:
        app.conf.update(previous)
        _forget_connections()


@contextmanager
def _bench_worker() -> Iterator[subprocess.Popen[bytes]]:
    """This module's own `celery worker -Q bench`, on the test database."""
    if connection.vendor != "postgresql":
        missing("PostgreSQL", "a worker process needs a shared database; set DATABASE_URL")
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        missing("Redis", f"{REDIS_URL}: {exc}")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
           "SECRET_KEY": "tests-only-not-secret", "DATABASE_URL": url,
           "CELERY_BROKER_URL": REDIS_URL, "GCA_REAPER_TEST_PREFIX": PREFIX,
           "GCA_REAPER_TEST_HEARTBEAT_S": str(HEARTBEAT_S)}  # fmt: skip
    log_path = ROOT / "var" / "test-logs" / f"reaper-worker-{db['NAME']}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.advisor.benchmarking.worker_app",
             "worker", "-Q", "bench", "--pool", "solo", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "-n", f"reaper-test-{PREFIX}@%h",
             "-l", "info"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench worker did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
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
    with _broker_with_prefix(), _bench_worker() as worker:
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
