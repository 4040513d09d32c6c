"""What `make demo` runs beside the web server: a Celery worker with beat when Redis answers.

`demo_processes` decides, from whether the broker answered, which processes serve the demo:
gunicorn always; with a broker also one Celery worker that consumes every queue and embeds
beat (`-B`), so schedules fire and reports, what-ifs and benchmark jobs run in the
background as in production. Without one, tasks run inside the web process
(`CELERY_TASK_ALWAYS_EAGER`) and every page says so (`dashboard.context_processors`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import redis

QUEUES = ("default", "sim", "bench", "rollout")
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/5"


@dataclass(frozen=True)
class DemoProcess:
    name: str
    argv: tuple[str, ...]


def broker_answers(url: str, *, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at `url` within `timeout_s`."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def demo_processes(*, broker_url: str | None, bind: str, var_dir: str) -> list[DemoProcess]:
    """The demo's processes: the worker (when `broker_url` is set) and gunicorn, in start order."""
    python = sys.executable
    processes: list[DemoProcess] = []
    if broker_url:
        processes.append(
            DemoProcess(
                "worker+beat",
                (
                    python, "-m", "celery", "-A", "config", "worker", "-B",
                    "-Q", ",".join(QUEUES), "--concurrency", "1", "--loglevel", "INFO",
                    "--logfile", f"{var_dir}/demo-worker.log",
                    "--schedule", f"{var_dir}/demo-beat-schedule",
                ),
            )
        )  # fmt: skip
    processes.append(
        DemoProcess(
            "web",
            (
                python, "-m", "gunicorn", "config.wsgi", "--bind", bind,
                "--workers", "2", "--timeout", "300",
            ),
        )
    )  # fmt: skip
    return processes
