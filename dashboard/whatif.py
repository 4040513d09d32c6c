"""Writes of the what-if playground: store a run, simulate it on the `sim` queue, record it.

`whatif_create` checks the changes against the assessment's scenario at once (errors name
the field, nothing is stored), stores a queued `WhatIf` and queues `dashboard.tasks.whatif_run`
(queue `sim`) when the caller's transaction commits; with no broker (the demo) it runs in
the same process. `whatif_execute` runs a claimed row through `advisor.services.whatif` and
stores the engine's answer, or the error.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from advisor.models import Assessment, AssessmentStatus
from advisor.services.assessment_engine import scenario_from_json
from advisor.services.whatif import (
    WhatIfInputError,
    json_safe,
    whatif_scenario,
    whatif_simulate,
)
from dashboard.models import WhatIf, WhatIfStatus


def whatif_create(*, assessment: Assessment, changes: Any, user: Any = None) -> WhatIf:
    """A queued what-if of `assessment` with `changes` (validated now); runs on commit."""
    if assessment.status != AssessmentStatus.COMPLETED or not assessment.scenario:
        raise WhatIfInputError(
            "assessment", f"assessment #{assessment.pk} has no finished scenario to change"
        )
    checked = whatif_scenario(scenario=scenario_from_json(assessment.scenario), changes=changes)
    if not checked.described:
        raise WhatIfInputError("changes", "nothing changed: every value is the assessment's own")
    whatif = WhatIf.objects.create(
        assessment=assessment,
        changes=json_safe(changes),
        described=list(checked.described),
        scenario_digest=checked.scenario.digest(),
        created_by=user if getattr(user, "pk", None) else None,
        progress_message="queued",
    )
    transaction.on_commit(lambda: _queue(whatif.pk))
    return whatif


def _queue(whatif_id: int) -> None:
    from dashboard.tasks import whatif_run

    whatif_run.delay(whatif_id)


def whatif_claim(*, whatif_id: int) -> bool:
    """queued -> running, once (a redelivered task finds it claimed)."""
    claimed = WhatIf.objects.filter(id=whatif_id, status=WhatIfStatus.QUEUED).update(
        status=WhatIfStatus.RUNNING,
        started_at=timezone.now(),
        progress=0.05,
        progress_message="reading the assessment's scenario",
    )
    return claimed == 1


def whatif_execute(*, whatif_id: int) -> WhatIf:
    """Simulate a claimed (`running`) what-if and store the engine's answer."""
    whatif = WhatIf.objects.select_related("assessment").get(id=whatif_id)

    def progress(fraction: float, message: str) -> None:
        WhatIf.objects.filter(id=whatif_id).update(
            progress=round(0.1 + 0.85 * min(max(fraction, 0.0), 1.0), 4),
            progress_message=message[:255],
        )

    result = whatif_simulate(
        assessment=whatif.assessment, changes=whatif.changes, progress=progress
    )
    WhatIf.objects.filter(id=whatif_id, status=WhatIfStatus.RUNNING).update(
        status=WhatIfStatus.COMPLETED,
        progress=1.0,
        progress_message="done",
        finished_at=timezone.now(),
        scenario_digest=result.scenario_digest,
        **result.fields(),
    )
    return WhatIf.objects.get(id=whatif_id)


def whatif_fail(*, whatif_id: int, error: str) -> None:
    WhatIf.objects.filter(id=whatif_id, status=WhatIfStatus.RUNNING).update(
        status=WhatIfStatus.FAILED, error=error[:5000], finished_at=timezone.now()
    )
