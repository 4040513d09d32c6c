"""Rollout tasks (queue `rollout`): advance a rollout step by step; resume after a crash.

`advance(rollout_id)` claims the rollout with a lease (`lease_owner` / `lease_until`): only
the chain holding a live lease advances it, so a duplicate delivery or a second chain exits
at once. A step is short and idempotent (`advisor.services.rollout_steps`), so the task is
acked late: a worker killed mid-step has it redelivered, and repeating it is safe. The next
step is queued with the lease token and a countdown, and the lease lasts until then plus
`ROLLOUT_LEASE_GRACE_S`.

A killed worker's queued continuation can be lost (a Redis ETA message waits for the
visibility timeout), so `resume` re-queues every started rollout, at its lease's expiry: on
every worker start (`worker_ready`) and from beat every 30 s (`watchdog`, which also
measures ledger entries whose window has ended). After a restart a rollout therefore
resumes from its persisted step state, or rolls back when what happened meanwhile fails a
gate.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from advisor.models import ACTIVE_STATUSES, Rollout
from advisor.services.rollout_ledger import ledger_due_ids, ledger_measure
from advisor.services.rollout_steps import rollout_advance

log = logging.getLogger(__name__)


def _grace_s() -> float:
    return float(getattr(settings, "ROLLOUT_LEASE_GRACE_S", 15.0))


@shared_task(name="advisor.tasks.rollout.advance", acks_late=True, reject_on_worker_lost=True)
def advance(rollout_id: int, lease: str | None = None) -> str:
    now = timezone.now()
    token = lease or uuid.uuid4().hex
    holder = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=token)
    claimed = (
        Rollout.objects.filter(id=rollout_id, status__in=ACTIVE_STATUSES)
        .filter(holder)
        .update(lease_owner=token, lease_until=now + timedelta(seconds=60 + _grace_s()))
    )
    if claimed != 1:
        return "not claimed (over, gone, or another worker holds it)"
    try:
        delay_s = rollout_advance(rollout_id=rollout_id)
    except Exception:
        # Let the lease lapse soon: the watchdog retries the (idempotent) step.
        Rollout.objects.filter(id=rollout_id, lease_owner=token).update(
            lease_until=timezone.now() + timedelta(seconds=_grace_s())
        )
        raise
    if delay_s is None:
        Rollout.objects.filter(id=rollout_id, lease_owner=token).update(
            lease_owner="", lease_until=None
        )
        return "idle"
    until = timezone.now() + timedelta(seconds=delay_s + _grace_s())
    Rollout.objects.filter(id=rollout_id, lease_owner=token).update(lease_until=until)
    if advance.app.conf.task_always_eager:
        # No broker (the demo, unit tests): a countdown would run at once, recursively. The
        # lease lapses and the next watchdog (or an explicit call) takes the next step.
        return f"next step due in {delay_s:.1f} s (eager: not queued)"
    advance.apply_async((rollout_id, token), countdown=delay_s)
    return f"next step in {delay_s:.1f} s"


@shared_task(name="advisor.tasks.rollout.resume")
def resume() -> int:
    """Queue every started rollout at its lease's expiry (now when it has none).

    Paused ones too: a bake in progress still ends (and a failing gate still rolls back);
    a paused rollout with nothing in flight just answers "idle".
    """
    now = timezone.now()
    count = 0
    for rollout_id, lease_until in Rollout.objects.filter(status__in=ACTIVE_STATUSES).values_list(
        "id", "lease_until"
    ):
        if lease_until is None or lease_until <= now:
            advance.delay(rollout_id)
        else:
            advance.apply_async((rollout_id,), eta=lease_until + timedelta(seconds=1))
        count += 1
    return count


@shared_task(name="advisor.tasks.rollout.watchdog")
def watchdog() -> dict[str, int]:
    resumed = resume()
    measured = 0
    for entry_id in ledger_due_ids():
        ledger_measure(entry_id=entry_id)
        measured += 1
    return {"resumed": resumed, "measured": measured}


@worker_ready.connect
def _resume_on_start(sender: Any = None, **_: Any) -> None:
    """A (re)started worker picks up rollouts a dead one left mid-way."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        resume.apply_async(queue="rollout")
