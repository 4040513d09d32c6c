"""Assessment tasks (queue `sim`, routed by this module's name): run one, weekly schedules.

`assessment_run` claims its row (`queued` -> `running`), so a duplicate delivery does
nothing, then calls one service; whatever goes wrong inside, the assessment ends `failed`
with the error instead of staying `running`, and while it runs its heartbeat is kept fresh,
so one whose worker died is failed by beat (`advisor.services.reaper`). It is not acked
late: an assessment is cheap to start again by hand and must not run twice on a redelivery.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from advisor.models import Assessment, AssessmentStatus
from advisor.services import assessments as services
from advisor.services.reaper import heartbeat


@shared_task(name="advisor.tasks.sim.assessment_run")
def assessment_run(assessment_id: int) -> str:
    now = timezone.now()
    claimed = Assessment.objects.filter(id=assessment_id, status=AssessmentStatus.QUEUED).update(
        status=AssessmentStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        progress_message="started",
    )
    if claimed != 1:
        return "not queued (already claimed or gone)"
    try:
        with heartbeat(Assessment, assessment_id):
            services.assessment_execute(assessment_id=assessment_id)
    except Exception as exc:  # whatever broke, the row must not stay "running" (re-raised)
        services.assessment_fail(
            assessment_id=assessment_id, error=f"internal error: {type(exc).__name__}: {exc}"
        )
        raise
    return "done"


@shared_task(name="advisor.tasks.sim.assessment_scheduled")
def assessment_scheduled(schedule_id: int) -> int | None:
    """A cluster's recurring assessment (beat; one PeriodicTask per cluster)."""
    assessment = services.assessment_scheduled_create(schedule_id=schedule_id)
    return None if assessment is None else assessment.pk


@shared_task(name="advisor.tasks.sim.assessment_schedules_ensure")
def assessment_schedules_ensure() -> int:
    """Give new clusters the default weekly assessment (beat, hourly)."""
    return services.schedules_ensure()
