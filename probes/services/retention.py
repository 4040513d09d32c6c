"""Retention: delete raw telemetry, old rollups, proxy records and batch ids past their age.

Ages (days) come from settings, with these defaults: PROBES_RAW_RETENTION_DAYS 14 (GPU and
engine samples), PROBES_MINUTE_ROLLUP_RETENTION_DAYS 90, PROBES_HOUR_ROLLUP_RETENTION_DAYS
730, PROBES_PROXY_REQUEST_RETENTION_DAYS 180 (proxy and derived request records; imported
traces are kept until their import is deleted), PROBES_INGEST_BATCH_RETENTION_DAYS 30.
Request rollups past the rollup ages go only once no request of their bucket is left, so
an imported trace keeps its load shape for as long as it is kept.
Deletes run in chunks so no statement holds locks for long.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from probes.models import (
    EngineRollup,
    EngineSample,
    GpuRollup,
    GpuSample,
    IngestBatch,
    RequestRecord,
    RequestRollup,
    RequestSource,
    RollupResolution,
)

DEFAULT_DAYS = {
    "PROBES_RAW_RETENTION_DAYS": 14,
    "PROBES_MINUTE_ROLLUP_RETENTION_DAYS": 90,
    "PROBES_HOUR_ROLLUP_RETENTION_DAYS": 730,
    "PROBES_PROXY_REQUEST_RETENTION_DAYS": 180,
    "PROBES_INGEST_BATCH_RETENTION_DAYS": 30,
}
# Rows deleted per statement: ~50k index entries, well under a second on PostgreSQL.
CHUNK = 50_000
# GPU samples are deleted 10 minutes at a time: 600k rows for a 1,000-GPU fleet at 1 Hz.
TIME_SLICE = timedelta(minutes=10)


def retention_days(name: str) -> int:
    return int(getattr(settings, name, DEFAULT_DAYS[name]))


def retention_apply(*, now: datetime | None = None) -> dict[str, int]:
    """Delete everything past its retention age; returns rows deleted per kind."""
    now = now or timezone.now()

    def cutoff(name: str) -> datetime:
        return now - timedelta(days=retention_days(name))

    raw = cutoff("PROBES_RAW_RETENTION_DAYS")
    minute = cutoff("PROBES_MINUTE_ROLLUP_RETENTION_DAYS")
    hour = cutoff("PROBES_HOUR_ROLLUP_RETENTION_DAYS")
    proxy = cutoff("PROBES_PROXY_REQUEST_RETENTION_DAYS")
    return {
        "gpu_samples": _delete_by_time(GpuSample, "ts", raw),
        "engine_samples": _delete(EngineSample.objects.filter(ts__lt=raw)),
        "gpu_rollups": _delete(GpuRollup.objects.filter(
            models.Q(resolution=RollupResolution.MINUTE, bucket_start__lt=minute)
            | models.Q(resolution=RollupResolution.HOUR, bucket_start__lt=hour)
        )),
        "engine_rollups": _delete(EngineRollup.objects.filter(
            models.Q(resolution=RollupResolution.MINUTE, bucket_start__lt=minute)
            | models.Q(resolution=RollupResolution.HOUR, bucket_start__lt=hour)
        )),
        "request_rollups": (
            _delete(_orphan_request_rollups(RollupResolution.MINUTE, minute))
            + _delete(_orphan_request_rollups(RollupResolution.HOUR, hour))
        ),
        "requests": _delete(RequestRecord.objects.filter(
            source__in=[RequestSource.PROXY, RequestSource.DERIVED], arrival_ts__lt=proxy
        )),
        "ingest_batches": _delete(IngestBatch.objects.filter(
            received_at__lt=cutoff("PROBES_INGEST_BATCH_RETENTION_DAYS")
        )),
    }  # fmt: skip


def _orphan_request_rollups(resolution: str, before: datetime) -> models.QuerySet[RequestRollup]:
    """Old request rollups whose bucket has no request left (imported traces keep theirs)."""
    width = timedelta(minutes=1) if resolution == RollupResolution.MINUTE else timedelta(hours=1)
    bucket_end = models.ExpressionWrapper(
        models.OuterRef("bucket_start") + width, output_field=models.DateTimeField()
    )
    records = RequestRecord.objects.filter(
        deployment_id=models.OuterRef("deployment_id"),
        arrival_ts__gte=models.OuterRef("bucket_start"),
        arrival_ts__lt=bucket_end,
    )
    return RequestRollup.objects.filter(resolution=resolution, bucket_start__lt=before).exclude(
        models.Exists(records)
    )


def _delete_by_time(model: type[models.Model], field: str, before: datetime) -> int:
    """Delete rows older than `before` a time slice at a time (for a composite-key table)."""
    manager = model._default_manager
    deleted = 0
    while True:
        # The oldest row left: empty stretches of time cost no statement.
        oldest = manager.filter(**{f"{field}__lt": before}).aggregate(m=models.Min(field))["m"]
        if oldest is None:
            return deleted
        until = min(before, oldest + TIME_SLICE)
        slice_ = manager.filter(**{f"{field}__gte": oldest, f"{field}__lt": until})
        deleted += slice_._raw_delete(slice_.db)


def _delete(queryset: models.QuerySet[models.Model]) -> int:
    model = queryset.model
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:CHUNK])
        if not ids:
            return deleted
        # _raw_delete: no per-row signals or cascades to collect (these rows have no
        # dependents), one DELETE ... WHERE id IN (...) per chunk.
        deleted += model._default_manager.filter(pk__in=ids)._raw_delete(queryset.db)
