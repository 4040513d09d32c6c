"""Assessments started or finished at the same moment, on PostgreSQL with real row locks.

Each thread has its own database connection (and transaction), as two web workers or two
`sim` workers would; the test database is committed to for real (transaction=True).
SQLite serializes all writers, so these need PostgreSQL (CI runs them; elsewhere they skip).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from advisor.models import Assessment, AssessmentStatus
from advisor.services import assessments
from advisor.services.assessment_engine import EngineOutcome
from advisor.tasks.sim import assessment_run
from probes.models import Cluster
from tests.advisor.assessments.fleet import TRACE_END, LabFleet, fleet_build
from tests.support.components import missing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        missing("PostgreSQL", "row locks need it: set DATABASE_URL=postgres://...")
    # Rows are created here and run by hand below, not on commit.
    monkeypatch.setattr(assessments, "_queue_run", lambda assessment_id: None)


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread (own connection), released together; their results."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        try:
            start.wait(timeout=10)
            return call()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=60) for future in futures]


def test_it_queues_one_of_two_identical_requests_made_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Cluster.objects.create(name="prod")
    throttle = getattr(assessments, "_throttle", lambda user: None)

    def slow_throttle(user: Any) -> None:
        # Widens the gap between "is one under way?" and the insert, where a race would be.
        time.sleep(0.3)
        throttle(user)

    monkeypatch.setattr(assessments, "_throttle", slow_throttle, raising=False)

    def start() -> int:
        return assessments.assessment_create(cluster="prod", window="24h").pk

    first, second = _at_once(start, start)
    assert first == second
    assert list(Assessment.objects.values_list("id", flat=True)) == [first]


def _outcome() -> EngineOutcome:
    return EngineOutcome(
        engine_version="test",
        baseline={"deployments": {"chat": {"util_pct": 30.0, "usd_per_month": 9000.0}}},
        strategies={"chat": {}},
        plan={"savings_usd_per_month": 3000.0, "fleet_plan": {}},
    )


@pytest.fixture
def lab() -> LabFleet:
    return fleet_build(days=2, interval_s=300)


def test_it_keeps_one_chain_when_two_assessments_finish_at_once(
    lab: LabFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assessments, "scenario_run", lambda scenario, progress: _outcome())
    first = assessments.assessment_create(cluster="lab", window="2d", end=TRACE_END)
    assert assessment_run(first.pk) == "done"
    # Two more, queued together (different windows, so both run), then run side by side
    # until both reach the engine, and finished at the same moment.
    one = assessments.assessment_create(
        cluster="lab", window="2d", end=TRACE_END + timedelta(hours=1)
    )
    two = assessments.assessment_create(cluster="lab", window="1d", end=TRACE_END)
    engine = threading.Barrier(2)

    def engine_run(scenario: Any, progress: Any) -> EngineOutcome:
        engine.wait(timeout=30)
        return _outcome()

    monkeypatch.setattr(assessments, "scenario_run", engine_run)
    assert _at_once(lambda: assessment_run(one.pk), lambda: assessment_run(two.pk)) == [
        "done",
        "done",
    ]
    rows = list(Assessment.objects.filter(cluster=lab.cluster).order_by("finished_at", "id"))
    assert [row.status for row in rows] == [AssessmentStatus.COMPLETED] * 3
    assert rows[0].pk == first.pk
    # One line in completion order: each links the one finished just before it.
    assert [row.previous_id for row in rows] == [None, rows[0].pk, rows[1].pk]
    assert [row.trend.get("previous_id") for row in rows] == [None, rows[0].pk, rows[1].pk]
