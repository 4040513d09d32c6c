"""Celery tasks of the probes app (queue `default`): rollups, retention, Prometheus pulls.

Beat runs `rollup_pending` every minute and `retention_apply` daily (CELERY_BEAT_SCHEDULE
in config/settings.py). Each task calls one service; all are idempotent, so a retry or an
overlapping run recomputes the same rows.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from probes.models import Cluster, TraceImport
from probes.services.prometheus import prometheus_import
from probes.services.retention import retention_apply as retention_apply_service
from probes.services.rollups import rollups_pending_compute, trace_import_rollup


@shared_task(name="probes.tasks.rollup_pending", acks_late=True)
def rollup_pending() -> dict[str, int]:
    """Roll up the hours touched by new agent batches and trace imports."""
    return rollups_pending_compute()


@shared_task(name="probes.tasks.rollup_trace_import", acks_late=True)
def rollup_trace_import(trace_import_id: int) -> int:
    """Roll up one import's hours (queued on commit by the import)."""
    trace_import = TraceImport.objects.filter(id=trace_import_id, rolled_up_at__isnull=True).first()
    if trace_import is None:
        return 0  # already rolled up (by this task or by rollup_pending), or deleted
    return trace_import_rollup(trace_import=trace_import)


@shared_task(name="probes.tasks.retention_apply", acks_late=True)
def retention_apply() -> dict[str, int]:
    """Delete telemetry past its retention age (see probes.services.retention)."""
    return retention_apply_service()


@shared_task(name="probes.tasks.prometheus_pull", acks_late=True)
def prometheus_pull(url: str, cluster: str, minutes: int = 10, step_s: int = 15) -> dict[str, int]:
    """Pull the last `minutes` of GPU and vLLM metrics from a Prometheus (schedule it in the
    admin's periodic tasks with kwargs {"url": ..., "cluster": ...})."""
    end = timezone.now()
    target, _created = Cluster.objects.get_or_create(name=cluster)
    report = prometheus_import(
        url=url, cluster=target, start=end - timedelta(minutes=minutes), end=end, step_s=step_s
    )
    return report.counts()
