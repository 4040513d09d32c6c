"""A real Celery worker process on Redis, sharing the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.db import connection

from config.celery import app
from tests.support.components import REDIS_URL, missing

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT_S = 60.0


@contextmanager
def running_worker(
    *, queues: str = "default,sim,bench,rollout"
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `celery worker` against Redis and the test database; point our app at it."""
    if connection.vendor != "postgresql":
        missing("PostgreSQL", "a worker process needs a shared database; set DATABASE_URL")
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.RedisError as exc:
        missing("Redis", f"{REDIS_URL}: {exc}")

    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "tests-only-not-secret",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
    }
    log_path = ROOT / "var" / "test-logs" / f"celery-worker-{db['NAME']}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_ready(process, log_path)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def app_uses_broker() -> Iterator[None]:
    """Send this process's tasks to the real broker instead of running them eagerly."""
    keys = ("broker_url", "result_backend", "task_always_eager")
    previous = {key: app.conf[key] for key in keys}
    app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL, task_always_eager=False)
    _forget_connections()
    try:
        yield
    finally:
        app.conf.update(previous)
        _forget_connections()


def _forget_connections() -> None:
    # Celery caches its result backend and producer pool on first use: an eager task run
    # earlier in the session (a trace import, a report) cached the disabled backend.
    app._backend_cache = None
    vars(app._local).pop("backend", None)
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


def _wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited: {log_path.read_text()[-2000:]}")
        if b"ready." in log_path.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready in {WORKER_START_TIMEOUT_S} s")
