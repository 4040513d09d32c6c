"""Housekeeping on the `default` queue: fail the jobs a dead worker left `running` (beat).

Benchmark jobs and assessments are not acked late (re-running them on a redelivery would be
wrong), so a worker killed mid-way leaves its row `running`; beat runs `fail_lost_jobs`
every minute, which fails a row whose heartbeat stopped (`advisor.services.reaper`).
"""

from __future__ import annotations

from celery import shared_task

from advisor.services.reaper import lost_jobs_fail


@shared_task(name="advisor.tasks.reaper.fail_lost_jobs")
def fail_lost_jobs() -> dict[str, int]:
    return lost_jobs_fail()
