"""The reliability fuzz harness (`tests/benchmarks/bench_fuzz.py`) on a small case budget."""

from __future__ import annotations

import io
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from advisor.models import Assessment
from tests.benchmarks import bench_fuzz

AGENT_OPERATIONS = {
    "GET /api/v1/agent/config/",
    "POST /api/v1/agent/config/",
    "POST /api/v1/ingest/",
}


def _operations() -> set[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}


@pytest.mark.django_db(transaction=True)
def test_it_sends_cases_to_every_operation_with_its_credentials() -> None:
    result = bench_fuzz.fuzz(cases_per_mode=2)

    assert set(result.cases) == _operations()
    assert len(result.cases) == 25
    assert result.total >= 50
    assert sum(result.statuses.values()) == result.total
    assert not [key for key in result.statuses if key[1] == 401]
    # The agent token opened the agent views; the admin's session and CSRF token the others.
    for operation in AGENT_OPERATIONS:
        assert any(op == operation and 200 <= status < 300 for op, status in result.statuses)
    for operation in ("POST /api/v1/assessments/", "POST /api/v1/benchmarks/"):
        answered = {status for op, status in result.statuses if op == operation}
        assert answered, operation
        assert not answered & {401, 403}, (operation, answered)


@pytest.mark.django_db(transaction=True)
def test_it_reports_each_server_error_with_a_reproduction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(**_: Any) -> Any:
        raise RuntimeError("ledger unreadable")

    def refuses_nul(*, cluster_name: str | None) -> Any:
        # What PostgreSQL does with NUL in text, on any database.
        if cluster_name and "\x00" in cluster_name:
            raise ValueError("NUL in text")
        return Assessment.objects.none()

    monkeypatch.setattr("advisor.api.rollouts.ledger_list", broken)
    monkeypatch.setattr("advisor.api.assessments.assessments_list", refuses_nul)
    result = bench_fuzz.fuzz(cases_per_mode=2)
    out = io.StringIO()
    bench_fuzz.report(result, out=out)

    ledger = [e for e in result.server_errors if e.operation == "GET /api/v1/rollout-ledger/"]
    assert len(ledger) == 1
    assert ledger[0].status == 500
    assert ledger[0].curl.startswith("curl -X GET")
    assert ledger[0].curl.endswith("http://localhost/api/v1/rollout-ledger/")
    raised_at = broken.__code__.co_firstlineno + 1
    assert bench_fuzz.traceback_gist(ledger[0].traceback) == (
        f'File "{__file__}", line {raised_at}, in broken: raise RuntimeError("ledger unreadable")'
        " -> RuntimeError: ledger unreadable"
    )
    assert "#     1 cases    1 5xx  GET /api/v1/rollout-ledger/  (500:1)" in out.getvalue()
    assert "# 5xx: GET /api/v1/rollout-ledger/ -> 500: curl -X GET" in out.getvalue()
    # The copies of positive cases with NUL-suffixed text are sent and refused with a 400
    # before any view runs (dashboard.middleware): the planted filter never meets a NUL.
    assert not [e for e in result.server_errors if e.operation == "GET /api/v1/assessments/"]
    assert result.statuses["GET /api/v1/assessments/", 400] >= 1
