"""Pages answer a NUL in a query or form field with a 400 naming the field, not a 500.

SQLite stores a NUL, so on SQLite these pass either way; on PostgreSQL (CI) the filters and
writes below were 500s before `dashboard.middleware.UnstorableTextMiddleware`.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from advisor.models import Assessment
from dashboard.models import ReportSchedule
from probes.models import Cluster
from tests.dashboard.conftest import SmallFleet
from tests.support.text import NUL

pytestmark = pytest.mark.django_db


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _refusal(response: Any) -> tuple[int, str, str]:
    """Status, field and problem of the 400 page (which shows "field: problem")."""
    assert response.templates[0].name == "dashboard/bad_request.html"
    return response.status_code, response.context["field"], response.context["problem"]


@pytest.mark.parametrize(
    ("url", "field", "position"),
    [
        ("/?cluster=%00", "cluster", 0),
        ("/gpus/?cluster=%00", "cluster", 0),
        ("/gpus/?sort=idle%00", "sort", 4),
        ("/traces/?deployment=1%00", "deployment", 1),
        ("/?window=24h&end=2025-01-01T00:00%00", "end", 16),
        ("/benchmarks/compare/?run=%00", "run", 0),
        ("/rollouts/new/?assessment=%00", "assessment", 0),
    ],
)
def test_it_answers_a_nul_in_a_query_with_a_400_page_naming_it(
    carol: User, url: str, field: str, position: int
) -> None:
    Cluster.objects.create(name="prod")
    response = _as(carol).get(url)
    assert _refusal(response) == (400, field, NUL.format(position))
    assert f"{field}: {NUL.format(position)}" in response.content.decode()


def test_it_still_reports_an_unknown_cluster_by_its_name_only(carol: User) -> None:
    Cluster.objects.create(name="prod")
    Cluster.objects.create(name="secret-lab")
    response = _as(carol).get("/?cluster=nope")
    assert response.status_code == 200
    assert response.context["errors"] == ["cluster: no cluster named 'nope'; showing all clusters"]
    assert "secret-lab" not in str(response.context["errors"])


def test_it_refuses_a_nul_in_an_assessment_form_and_stores_nothing(bob: User) -> None:
    Cluster.objects.create(name="prod")
    response = _as(bob).post("/assessments/", {"cluster": "prod", "window": "7d\x00"})
    assert _refusal(response) == (400, "window", NUL.format(2))
    assert not Assessment.objects.exists()


def test_it_refuses_a_nul_in_report_recipients_and_saves_nothing(alice: User) -> None:
    cluster = Cluster.objects.create(name="prod")
    response = _as(alice).post(
        f"/reports/schedules/{cluster.pk}/",
        {"recipients": "ops@example.org\x00", "window_days": "7", "enabled": "on"},
    )
    assert _refusal(response) == (400, "recipients", NUL.format(15))
    assert not ReportSchedule.objects.exists()


def test_it_refuses_a_nul_in_a_parameter_name(carol: User) -> None:
    response = _as(carol).get("/?%00=1")
    assert _refusal(response) == (400, "'\\x00'", "the parameter name " + NUL.format(0))


def test_it_lets_ordinary_text_through(carol: User, small_fleet: SmallFleet) -> None:
    response = _as(carol).get("/gpus/?cluster=prod&window=24h&sort=name")
    assert response.status_code == 200
