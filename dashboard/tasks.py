"""Celery tasks of the dashboard (queue `default`): build reports, run report schedules.

Each takes ids, calls one service; builds claim the report row, so a retry or a second
worker never renders a report twice.
"""

from __future__ import annotations

from celery import shared_task

from dashboard.reports import services


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
