"""The reaper (`advisor.services.reaper`, `advisor.tasks.reaper`): rows a dead worker left
`running` end failed once their heartbeat is stale; live and finished rows are untouched.

Time is controlled through `lost_jobs_fail(now=...)`; the heartbeat thread is tested with a
short interval on committed rows (it writes on its own connection). The SIGKILLed worker is
in `tests/advisor/benchmarking/test_worker_lost.py`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db.models import QuerySet

from advisor.models import Assessment, BenchmarkEndpoint, BenchmarkJob
from advisor.services.reaper import heartbeat, lost_jobs_fail
from advisor.tasks.reaper import fail_lost_jobs
from config.celery import app
from probes.models import Cluster
from tests.advisor.benchmarking.conftest import make_endpoint

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=601)  # the default threshold (600 s) has just passed
LOST_AT_T0 = "worker lost: no heartbeat since 2026-03-02T12:00:00+00:00 (threshold 600 s)"


def _job(status: str = "running", *, beat: datetime | None = T0, **extra: Any) -> BenchmarkJob:
    endpoint = BenchmarkEndpoint.objects.first() or make_endpoint("http://127.0.0.1:9")
    return BenchmarkJob.objects.create(
        endpoint=endpoint, kind="run", spec={}, max_concurrency=1, max_duration_s=60,
        status=status, started_at=T0 - timedelta(minutes=5), heartbeat_at=beat, **extra,
    )  # fmt: skip


def _assessment(status: str = "running", *, beat: datetime | None = T0) -> Assessment:
    cluster, _ = Cluster.objects.get_or_create(name="reaped")
    return Assessment.objects.create(
        cluster=cluster, window_start=T0 - timedelta(days=7), window_end=T0, status=status,
        started_at=T0 - timedelta(minutes=5), heartbeat_at=beat, progress=0.5,
        progress_message="simulating",
    )  # fmt: skip


@pytest.mark.django_db
def test_it_fails_a_running_job_and_assessment_whose_heartbeat_is_stale() -> None:
    job, assessment = _job(), _assessment()

    assert lost_jobs_fail(now=NOW) == {"benchmark_jobs": 1, "assessments": 1}

    job.refresh_from_db()
    assessment.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("failed", LOST_AT_T0, NOW)
    assert (assessment.status, assessment.error, assessment.finished_at) == (
        "failed",
        LOST_AT_T0,
        NOW,
    )
    assert job.heartbeat_at == T0  # the last sign of life stays on the row
    assert assessment.progress == 0.5  # where it got to, for whoever reads the failure


@pytest.mark.django_db
def test_it_ends_a_job_an_operator_cancelled_after_its_worker_died_as_cancelled() -> None:
    job = _job(cancel_requested=True)

    assert lost_jobs_fail(now=NOW) == {"benchmark_jobs": 1, "assessments": 0}

    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == (
        "cancelled",
        f"cancelled; {LOST_AT_T0}",
        NOW,
    )


@pytest.mark.django_db
def test_it_leaves_a_running_row_with_a_fresh_heartbeat_alone() -> None:
    fresh = NOW - timedelta(seconds=599)
    job, assessment = _job(beat=fresh), _assessment(beat=fresh)

    assert lost_jobs_fail(now=NOW) == {"benchmark_jobs": 0, "assessments": 0}

    job.refresh_from_db()
    assessment.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("running", "", None)
    assert (assessment.status, assessment.error, assessment.finished_at) == ("running", "", None)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "completed", "failed", "cancelled"])
def test_it_leaves_a_job_that_is_not_running_alone(status: str) -> None:
    job = _job(status, error="as it was")

    assert lost_jobs_fail(now=NOW)["benchmark_jobs"] == 0

    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == (status, "as it was", None)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "completed", "failed"])
def test_it_leaves_an_assessment_that_is_not_running_alone(status: str) -> None:
    assessment = _assessment(status)

    assert lost_jobs_fail(now=NOW)["assessments"] == 0

    assessment.refresh_from_db()
    assert (assessment.status, assessment.error, assessment.finished_at) == (status, "", None)


@pytest.mark.django_db
def test_it_is_idempotent() -> None:
    job = _job()
    assert lost_jobs_fail(now=NOW)["benchmark_jobs"] == 1

    assert lost_jobs_fail(now=NOW + timedelta(hours=1))["benchmark_jobs"] == 0

    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("failed", LOST_AT_T0, NOW)


@pytest.mark.django_db
def test_it_does_not_fail_a_row_that_beat_after_it_was_found_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _job()
    # The worker's heartbeat lands between the reaper's SELECT and its UPDATE.
    real_update = QuerySet.update

    def beat_first(queryset: QuerySet[Any], **fields: Any) -> int:
        if fields.get("status") == "failed":
            BenchmarkJob.objects.filter(id=job.id).update(heartbeat_at=NOW)
        return real_update(queryset, **fields)

    monkeypatch.setattr(QuerySet, "update", beat_first)

    assert lost_jobs_fail(now=NOW)["benchmark_jobs"] == 0

    job.refresh_from_db()
    assert (job.status, job.heartbeat_at) == ("running", NOW)


@pytest.mark.django_db
def test_it_takes_the_start_when_a_running_row_never_beat() -> None:
    """Rows claimed before heartbeats existed: their start is the last sign of life."""
    job = _job(beat=None)

    assert lost_jobs_fail(now=NOW)["benchmark_jobs"] == 1

    job.refresh_from_db()
    assert job.error == (
        "worker lost: no heartbeat since 2026-03-02T11:55:00+00:00 (threshold 600 s)"
    )


@pytest.mark.django_db
def test_it_reads_the_threshold_from_settings(settings: Any) -> None:
    settings.JOB_HEARTBEAT_TIMEOUT_S = 3600
    job = _job()

    assert lost_jobs_fail(now=NOW)["benchmark_jobs"] == 0
    assert lost_jobs_fail(now=T0 + timedelta(seconds=3601))["benchmark_jobs"] == 1

    job.refresh_from_db()
    assert job.error == (
        "worker lost: no heartbeat since 2026-03-02T12:00:00+00:00 (threshold 3600 s)"
    )


@pytest.mark.django_db
def test_it_runs_from_beat_every_minute_on_the_default_queue() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["advisor-lost-jobs"]
    assert entry == {"task": "advisor.tasks.reaper.fail_lost_jobs", "schedule": 60.0}
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "default"
    job = _job(beat=datetime.now(UTC) - timedelta(minutes=11))
    fresh = _assessment(beat=datetime.now(UTC))

    assert fail_lost_jobs() == {"benchmark_jobs": 1, "assessments": 0}

    job.refresh_from_db()
    fresh.refresh_from_db()
    assert (job.status, fresh.status) == ("failed", "running")
    assert job.error.startswith("worker lost: no heartbeat since ")


@pytest.mark.django_db(transaction=True)
def test_it_beats_while_the_block_runs_and_stops_after(settings: Any) -> None:
    settings.JOB_HEARTBEAT_INTERVAL_S = 0.05
    job = _job()

    with heartbeat(BenchmarkJob, job.id):
        deadline = time.monotonic() + 10
        while BenchmarkJob.objects.get(id=job.id).heartbeat_at == T0:
            assert time.monotonic() < deadline, "no heartbeat within 10 s"
            time.sleep(0.02)
    last = BenchmarkJob.objects.get(id=job.id).heartbeat_at
    time.sleep(0.3)

    assert last is not None
    assert last > T0
    assert BenchmarkJob.objects.get(id=job.id).heartbeat_at == last  # the thread stopped


@pytest.mark.django_db(transaction=True)
def test_it_never_beats_for_a_row_that_is_no_longer_running(settings: Any) -> None:
    settings.JOB_HEARTBEAT_INTERVAL_S = 0.05
    assessment = _assessment("failed")

    with heartbeat(Assessment, assessment.id):
        time.sleep(0.3)

    assessment.refresh_from_db()
    assert assessment.heartbeat_at == T0


@pytest.mark.django_db(transaction=True)
def test_it_fails_a_row_still_running_past_its_budget_and_stops_beating(settings: Any) -> None:
    settings.JOB_HEARTBEAT_INTERVAL_S = 0.05
    job = _job()

    with heartbeat(BenchmarkJob, job.id, budget_s=0.3):  # the block hangs past its budget
        deadline = time.monotonic() + 10
        while BenchmarkJob.objects.get(id=job.id).status == "running":
            assert time.monotonic() < deadline, "not failed within 10 s"
            time.sleep(0.02)
        failed = BenchmarkJob.objects.get(id=job.id)
        time.sleep(0.3)
        assert BenchmarkJob.objects.get(id=job.id).heartbeat_at == failed.heartbeat_at

    assert failed.status == "failed"
    assert failed.error == (
        "stuck: still running after 0.3 s, its time budget (every step has its own timeout, "
        "so the worker hangs); failed and no longer watched"
    )
    assert failed.finished_at is not None
    assert failed.heartbeat_at is not None
    assert failed.heartbeat_at > T0  # it beat until the budget ran out


@pytest.mark.django_db(transaction=True)
def test_it_leaves_a_row_that_ended_within_its_budget_alone(settings: Any) -> None:
    settings.JOB_HEARTBEAT_INTERVAL_S = 0.05
    job = _job()

    with heartbeat(BenchmarkJob, job.id, budget_s=0.2):
        BenchmarkJob.objects.filter(id=job.id).update(status="completed")
        time.sleep(0.5)  # the budget passes after the row ended

    job.refresh_from_db()
    assert (job.status, job.error) == ("completed", "")
