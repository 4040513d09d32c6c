"""Reads of stored assessments for the API, the dashboard and reports."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from advisor.models import Assessment

BRIEF_FIELDS = ("status", "progress", "progress_message", "error", "engine_version")
DETAIL_FIELDS = (
    "scenario_digest", "inputs", "calibration", "measured", "baseline", "gap", "strategies",
    "plan", "data_gaps", "timings", "trend",
)  # fmt: skip


def assessments_list(*, cluster_name: str | None = None) -> QuerySet[Assessment]:
    """Newest first; one cluster's when named."""
    rows = Assessment.objects.select_related("cluster", "created_by").defer("scenario")
    return rows.filter(cluster__name=cluster_name) if cluster_name else rows


def assessment_get(*, assessment_id: int) -> Assessment | None:
    rows = Assessment.objects.select_related("cluster", "created_by")
    return rows.filter(id=assessment_id).first()


def assessment_latest(*, cluster_id: int) -> Assessment | None:
    """The cluster's newest completed assessment (what pages and reports show)."""
    return (
        Assessment.objects.filter(cluster_id=cluster_id, status="completed")
        .defer("scenario")
        .order_by("-window_end", "-id")
        .first()
    )


def assessment_json(assessment: Assessment, *, brief: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": assessment.pk,
        "cluster": assessment.cluster.name,
        "window_start": assessment.window_start.isoformat(),
        "window_end": assessment.window_end.isoformat(),
        **{name: getattr(assessment, name) for name in BRIEF_FIELDS},
        "previous_id": assessment.previous_id,
        "schedule_id": assessment.schedule_id,
        "created_by": assessment.created_by.get_username() if assessment.created_by else None,
        "created_at": assessment.created_at.isoformat(),
        "started_at": assessment.started_at.isoformat() if assessment.started_at else None,
        "finished_at": assessment.finished_at.isoformat() if assessment.finished_at else None,
    }
    if not brief:
        data.update({name: getattr(assessment, name) for name in DETAIL_FIELDS})
    return data
