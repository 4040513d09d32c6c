"""The beat task behind a recurring job: made once, then updated in place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from advisor.models import AssessmentSchedule
from advisor.services.beat import beat_task_save
from probes.models import Cluster

pytestmark = pytest.mark.django_db
WEEKLY = {"minute": "0", "hour": "6", "day_of_week": "1"}


def _save(schedule: AssessmentSchedule, **overrides: Any) -> PeriodicTask:
    given: dict[str, Any] = {"name": "job: prod", "task": "x.y", "crontab": WEEKLY, "enabled": True}
    return beat_task_save(schedule=schedule, **{**given, **overrides})


def test_it_creates_the_task_once_and_then_updates_it() -> None:
    schedule = AssessmentSchedule(cluster=Cluster.objects.create(name="prod"))
    first = _save(schedule, queue="sim")
    assert schedule.pk is not None
    assert schedule.periodic_task == first
    first.refresh_from_db()
    assert (first.name, first.task, first.queue, first.enabled) == ("job: prod", "x.y", "sim", True)
    assert json.loads(first.kwargs) == {"schedule_id": schedule.pk}

    PeriodicTask.objects.filter(pk=first.pk).update(queue="elsewhere")  # edited in the admin
    schedule.refresh_from_db()
    again = _save(schedule, name="ignored", crontab={**WEEKLY, "hour": "9"}, enabled=False)
    assert again.pk == first.pk
    again.refresh_from_db()
    assert (again.name, again.queue, again.enabled, again.crontab.hour) == (
        "job: prod", "elsewhere", False, "9"
    )  # fmt: skip
    assert PeriodicTask.objects.filter(task="x.y").count() == 1
