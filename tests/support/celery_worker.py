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
    components_check(flush=True)
    name = connection.settings_dict["NAME"]
    process = worker_spawn(
        app_module="config", queues=queues, log_name=f"celery-worker-{name}", env=worker_env()
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def components_check(*, flush: bool = False) -> None:
    """A worker process needs PostgreSQL (a database it shares with the test) and Redis."""
    if connection.vendor != "postgresql":
        missing("PostgreSQL", "a worker process needs a shared database; set DATABASE_URL")
    try:
        client = redis.Redis.from_url(REDIS_URL)
        if flush:
            client.flushdb()
        else:
            client.ping()
    except redis.RedisError as exc:
        missing("Redis", f"{REDIS_URL}: {exc}")


def worker_env(**extra: str) -> dict[str, str]:
    """A worker's environment: production settings on the test database and Redis, plus `extra`."""
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "tests-only-not-secret",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
        **extra,
    }


def worker_spawn(
    *,
    app_module: str,
    queues: str,
    log_name: str,
    env: dict[str, str],
    node_name: str = "",
    pool: str = "solo",
) -> subprocess.Popen[bytes]:
    """Start `celery -A app_module worker -Q queues` (one process: the solo pool, or one
    prefork child, which time limits need) and wait until it is ready.

    Its output goes to var/test-logs/<log_name>.log, whose tail is in the error if it dies.
    """
    log_path = ROOT / "var" / "test-logs" / f"{log_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    named = ["-n", node_name] if node_name else []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app_module, "worker", "-Q", queues,
             "--pool", pool, "--concurrency", "1", "--without-heartbeat", "--without-gossip",
             "--without-mingle", *named, "-l", "info"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_ready(process, log_path)
    except RuntimeError:
        if process.poll() is None:
            process.kill()
        raise
    return process


@contextmanager
def app_uses_broker(*, key_prefix: str = "") -> Iterator[None]:
    """Send this process's tasks to the real broker instead of running them eagerly.

    `key_prefix` puts every broker key under a prefix, so only a worker started with the same
    prefix (a test's own worker) takes these tasks, never the session's shared one.
    """
    keys = ("broker_url", "result_backend", "task_always_eager", "broker_transport_options")
    previous = {key: app.conf[key] for key in keys}
    options = {"global_keyprefix": key_prefix} if key_prefix else previous[keys[3]]
    app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL, task_always_eager=False,
                    broker_transport_options=options)  # fmt: skip
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
