"""The Celery app: queues `default`, `sim`, `bench`, `rollout`; config from Django settings."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gpu_cost_advisor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "sim", "bench", "rollout")]
app.autodiscover_tasks()


@app.task(name="config.ping", ignore_result=False)
def ping() -> str:
    """Answer from a worker: proves the broker round trip (healthz, integration tests)."""
    import socket

    return f"pong from {socket.gethostname()}"
