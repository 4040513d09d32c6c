"""Benchmark tasks (queue `bench`): run a job, fit a calibration from one.

The run task claims its job row (`queued` -> `running`) so a duplicate delivery does nothing,
then calls one service. It is not retried or acked late: re-running load after a worker
crash would measure something nobody asked for. Whatever goes wrong inside, the job ends
`failed` with the error instead of staying `running`; while it runs, its heartbeat is kept
fresh, so a job whose worker died is failed by beat (`advisor.services.reaper`).

A worker that hangs but lives would beat forever, so each job has a time budget
(`job_time_budget_s`: every step at its own timeout, in a row). Past it the heartbeat thread
fails the row ("stuck: ...") and stops beating, and `HARD_GRACE_S` later Celery's hard time
limit, set when the job is queued, kills the prefork child so the worker takes the next job.
No soft time limit: its exception would land wherever the code is, inside handlers that
keep a measured variant or a run going; a hung worker is past cleaning up after anyway.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from advisor.models import BenchmarkJob, JobStatus
from advisor.services.benchmark_runs import benchmark_job_execute, job_time_budget_s
from advisor.services.calibration import CalibrationError, calibration_fit
from advisor.services.reaper import heartbeat

HARD_GRACE_S = 60.0  # budget -> hard kill: the row is failed first (heartbeat every 30 s)


def queue_benchmark_job(job: BenchmarkJob) -> None:
    """Queue `job` when the transaction commits, with a hard time limit past its budget."""
    run_benchmark_job.apply_async_on_commit(
        (job.id,), time_limit=job_time_budget_s(job) + HARD_GRACE_S
    )


@shared_task(name="advisor.tasks.bench.run_benchmark_job")
def run_benchmark_job(job_id: int) -> str:
    now = timezone.now()
    claimed = BenchmarkJob.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    if claimed != 1:
        return "not queued (already claimed, cancelled or gone)"
    budget_s = job_time_budget_s(BenchmarkJob.objects.select_related("endpoint").get(id=job_id))
    try:
        with heartbeat(BenchmarkJob, job_id, budget_s=budget_s):
            benchmark_job_execute(job_id=job_id)
    except Exception as exc:  # whatever broke, the job must not stay "running" (re-raised)
        BenchmarkJob.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED,
            error=f"internal error: {type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise
    return "done"


@shared_task(name="advisor.tasks.bench.fit_calibration")
def fit_calibration(job_id: int) -> dict[str, object]:
    """Fit a profile from a finished job; the outcome is also stored on the job's result."""
    try:
        record = calibration_fit(job_id=job_id)
    except CalibrationError as exc:
        outcome: dict[str, object] = {"error": str(exc)}
    else:
        outcome = {"record_id": record.id, "fit_median_ape": record.fit_median_ape}
    job = BenchmarkJob.objects.filter(id=job_id).first()
    if job is not None:
        BenchmarkJob.objects.filter(id=job_id).update(result={**job.result, "calibration": outcome})
    return outcome
