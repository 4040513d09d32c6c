"""Celery tasks of the dashboard: build reports, run report schedules (queue `default`), and
simulate what-ifs (queue `sim`, beside assessments, so a long simulation never delays a report).

Each takes ids, calls one service; builds and what-ifs claim their row, so a retry or a
second worker never runs one twice.
"""

from __future__ import annotations

import logging

from celery import shared_task

from dashboard.reports import services

log = logging.getLogger(__name__)


@shared_task(name="dashboard.tasks.report_build", acks_late=True)
def report_build(report_id: int) -> str | None:
    """Render and store a queued report (queued on commit by `report_create`)."""
    report = services.report_build(report_id=report_id)
    return None if report is None else report.status


@shared_task(name="dashboard.tasks.report_scheduled")
def report_scheduled(schedule_id: int) -> int | None:
    """A cluster's scheduled report (beat; one PeriodicTask per cluster): build and mail it."""
    report = services.report_scheduled_run(schedule_id=schedule_id)
    return None if report is None else report.pk


@shared_task(name="dashboard.tasks.report_schedules_ensure")
def report_schedules_ensure() -> int:
    """Give new clusters the default weekly report schedule (beat, hourly)."""
    return services.schedules_ensure()


@shared_task(name="dashboard.tasks.whatif_run")
def whatif_run(whatif_id: int) -> str:
    """Simulate a queued what-if (routed to `sim` by CELERY_TASK_ROUTES); a failure is stored."""
    from dashboard import whatif

    if not whatif.whatif_claim(whatif_id=whatif_id):
        return "not queued (already claimed or gone)"
    try:
        whatif.whatif_execute(whatif_id=whatif_id)
    except Exception as exc:  # whatever broke, the row says so instead of staying "running"
        log.exception("what-if %s failed", whatif_id)
        whatif.whatif_fail(whatif_id=whatif_id, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return "done"
