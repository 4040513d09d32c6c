"""Fail benchmark jobs and assessments whose worker died: their heartbeat stopped.

While a `bench` or `sim` task runs its row, `heartbeat(...)` touches the row's `heartbeat_at`
from a background thread every `settings.JOB_HEARTBEAT_INTERVAL_S`, for as long as the
worker process lives, however long one step of the work takes. A worker killed by SIGKILL,
the OOM killer or a reboot takes the thread with it; since those tasks are not acked late,
nothing would ever finish the row. Beat runs `lost_jobs_fail()` every minute (the
`default` queue): a `running` row whose last sign of life (heartbeat, else start) is older
than `settings.JOB_HEARTBEAT_TIMEOUT_S` ends `failed` with "worker lost: no heartbeat since
<ts> (threshold <n> s)", or `cancelled` with that reason when an operator had asked a
benchmark job to stop (no worker was left to). Each row is ended by its own conditional
UPDATE (still running, heartbeat unchanged), so a row that finished or beat meanwhile is
left alone, and running the reaper twice changes nothing.

A worker that hangs but stays alive keeps beating, so a row may also carry a time budget:
past `budget_s` the heartbeat thread stops beating and fails the row itself ("stuck: still
running after ..."), by the same conditional UPDATE; the worker's late end cannot undo it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from advisor.models import Assessment, AssessmentStatus, BenchmarkJob, JobStatus

log = logging.getLogger(__name__)

# What the reaper watches: a label for its counts, the model, its running and failed status.
_WATCHED: tuple[tuple[str, type[BenchmarkJob] | type[Assessment], str, str], ...] = (
    ("benchmark_jobs", BenchmarkJob, JobStatus.RUNNING, JobStatus.FAILED),
    ("assessments", Assessment, AssessmentStatus.RUNNING, AssessmentStatus.FAILED),
)
JOIN_TIMEOUT_S = 10.0  # a heartbeat stuck on the database must not hold the task's end


def heartbeat_interval_s() -> float:
    return float(getattr(settings, "JOB_HEARTBEAT_INTERVAL_S", 30.0))


def heartbeat_timeout_s() -> int:
    return int(getattr(settings, "JOB_HEARTBEAT_TIMEOUT_S", 600))


@contextmanager
def heartbeat(
    model: type[BenchmarkJob] | type[Assessment], row_id: int, *, budget_s: float | None = None
) -> Iterator[None]:
    """Keep `row_id`'s `heartbeat_at` fresh while the block runs (the caller claimed the row).

    The claim itself should set `heartbeat_at`; the thread's first touch comes one interval
    later, so a short task never writes a heartbeat at all. A database error skips a beat
    (logged) instead of ending the thread: a few missed beats are far below the timeout.
    With `budget_s`, a block still running that long later is stuck: the row is failed
    (if still running) and the thread stops beating; the block itself cannot be interrupted.
    """
    stop = threading.Event()
    interval_s = heartbeat_interval_s()
    overrun_at = None if budget_s is None else time.monotonic() + budget_s

    def beat() -> None:
        try:
            while not stop.wait(interval_s):
                try:
                    if overrun_at is not None and time.monotonic() >= overrun_at:
                        _fail_stuck(model, row_id, budget_s or 0.0)
                        return
                    model.objects.filter(id=row_id, status="running").update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError as exc:
                    log.warning("heartbeat of %s %s skipped: %s", model.__name__, row_id, exc)
                    connection.close()  # reconnect on the next beat
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}-{row_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT_S)


def _fail_stuck(model: type[BenchmarkJob] | type[Assessment], row_id: int, budget_s: float) -> None:
    error = (
        f"stuck: still running after {budget_s:g} s, its time budget (every step has its "
        "own timeout, so the worker hangs); failed and no longer watched"
    )
    if model.objects.filter(id=row_id, status="running").update(
        status="failed", error=error, finished_at=timezone.now()
    ):
        log.error("%s %s failed: %s", model.__name__, row_id, error)


def _cancel_field(model: type[BenchmarkJob] | type[Assessment]) -> F | Value:
    """Whether an operator asked the row to stop (assessments cannot be cancelled)."""
    return F("cancel_requested") if model is BenchmarkJob else Value(False)


def lost_jobs_fail(*, now: datetime | None = None) -> dict[str, int]:
    """Fail every running benchmark job and assessment whose heartbeat is stale; counts."""
    now = now or timezone.now()
    threshold_s = heartbeat_timeout_s()
    cutoff = now - timedelta(seconds=threshold_s)
    counts: dict[str, int] = {}
    for label, model, running, failed in _WATCHED:
        # Rows claimed before heartbeats existed have none: their start is the last sign.
        stale = (
            model.objects.filter(status=running)
            .annotate(last_seen=Coalesce(F("heartbeat_at"), F("started_at"), F("created_at")))
            .filter(last_seen__lt=cutoff)
            .values_list("id", "heartbeat_at", "last_seen", _cancel_field(model))
        )
        counts[label] = 0
        for row_id, heartbeat_at, last_seen, cancelled in list(stale):
            error = (
                f"worker lost: no heartbeat since "
                f"{last_seen.astimezone(UTC).isoformat(timespec='seconds')} "
                f"(threshold {threshold_s} s)"
            )
            # An operator asked a job to stop and nobody was left to: it ends as asked.
            status, error = (
                (JobStatus.CANCELLED, f"cancelled; {error}") if cancelled else (failed, error)
            )
            # heartbeat_at=None filters IS NULL: a row that beat since the SELECT is not failed.
            if model.objects.filter(id=row_id, status=running, heartbeat_at=heartbeat_at).update(
                status=status, error=error, finished_at=now
            ):
                log.warning("%s %s %s: %s", model.__name__, row_id, status, error)
                counts[label] += 1
    return counts
