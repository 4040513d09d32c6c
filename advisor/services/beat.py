"""The django-celery-beat task behind a recurring per-cluster job (assessments, reports).

A schedule row (any model with a nullable `periodic_task` one-to-one) owns one PeriodicTask:
`beat_task_save` creates it on the first save, then sets its crontab and enabled flag, and
gives it the kwargs `{"schedule_id": <the row's id>}`. Call it inside the caller's
transaction, after setting the row's own fields: it saves the row too.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask


class Scheduled(Protocol):
    """A schedule row: AssessmentSchedule, dashboard's ReportSchedule."""

    pk: Any
    periodic_task: PeriodicTask | None

    def save(self) -> None: ...


def beat_task_save(
    *,
    schedule: Scheduled,
    name: str,
    task: str,
    crontab: dict[str, str],
    enabled: bool,
    queue: str | None = None,
) -> PeriodicTask:
    """Create or update `schedule`'s beat task running `task` (named `name` when created).

    `crontab` holds CrontabSchedule's fields (minute, hour, day_of_week...) in TIME_ZONE.
    `queue`, when given, is set on the task; otherwise the task's queue is left as it is.
    """
    cron, _ = CrontabSchedule.objects.get_or_create(**crontab, timezone=settings.TIME_ZONE)
    periodic = schedule.periodic_task
    if periodic is None:
        periodic = PeriodicTask(name=name, task=task)
    periodic.crontab = cron
    periodic.enabled = enabled
    if queue is not None:
        periodic.queue = queue
    periodic.save()
    schedule.periodic_task = periodic
    schedule.save()
    # The kwargs need the schedule's id, known only now on its first save.
    PeriodicTask.objects.filter(pk=periodic.pk).update(
        kwargs=json.dumps({"schedule_id": schedule.pk})
    )
    return periodic
