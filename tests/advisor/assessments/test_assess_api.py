"""Assessment API: who may start and read, field-named errors, nothing stored on bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from advisor.api.assessments import AssessmentListView
from advisor.models import Assessment, AssessmentStatus
from probes.models import Cluster


@pytest.fixture
def cluster(db: Any, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    # These tests look at the queued row; running it is the e2e test's job.
    monkeypatch.setattr("advisor.services.assessments._queue_run", lambda assessment_id: None)
    return Cluster.objects.create(name="prod")


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_it_declares_viewer_reads_and_operator_starts() -> None:
    assert AssessmentListView.required_role == {"GET": "viewer", "POST": "operator"}
    assert AssessmentListView.required_permission == "advisor.run_assessment"


def test_it_lets_an_operator_start_an_assessment(bob: User, cluster: Cluster) -> None:
    response = _client(bob).post(
        "/api/v1/assessments/",
        {"cluster": "prod", "window": "24h"},
        content_type="application/json",
    )
    assert response.status_code == 202
    body = response.json()
    assessment = Assessment.objects.get(pk=body["id"])
    assert (assessment.status, assessment.created_by) == (AssessmentStatus.QUEUED, bob)
    assert (assessment.window_end - assessment.window_start).total_seconds() == 24 * 3600
    assert assessment.window_end.minute == 0
    assert body["status"] == "queued"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"cluster": "nope"}, "cluster", "no cluster named 'nope'"),
        ({}, "cluster", "required: a cluster name"),
        ({"cluster": "prod", "window": "7 days"}, "window",
         "expected e.g. 7d, 24h or 2w, got '7 days'"),
        ({"cluster": "prod", "window": "100d"}, "window", "must be 1h..90d, got '100d'"),
        ({"cluster": "prod", "windw": "7d"}, "windw", "unknown field"),
    ],
)  # fmt: skip
def test_it_names_the_bad_field_and_stores_nothing(
    bob: User, cluster: Cluster, payload: dict[str, Any], field: str, message: str
) -> None:
    response = _client(bob).post("/api/v1/assessments/", payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": field, "message": message}]}
    assert not Assessment.objects.exists()


def test_it_refuses_a_body_that_is_not_json(bob: User, cluster: Cluster) -> None:
    response = _client(bob).post(
        "/api/v1/assessments/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "(body)"
    assert not Assessment.objects.exists()


def test_it_forbids_viewers_and_strangers_to_start_one(
    carol: User, cluster: Cluster, db: Any
) -> None:
    nobody = User.objects.create_user("dave", "dave@example.org", "password")
    for user, status in ((carol, 403), (nobody, 403), (None, 403)):
        response = _client(user).post(
            "/api/v1/assessments/", {"cluster": "prod"}, content_type="application/json"
        )
        assert response.status_code == status
    assert not Assessment.objects.exists()


def test_it_shows_assessments_to_viewers(carol: User, bob: User, cluster: Cluster) -> None:
    _client(bob).post("/api/v1/assessments/", {"cluster": "prod"}, content_type="application/json")
    assessment = Assessment.objects.get()
    listed = _client(carol).get("/api/v1/assessments/?cluster=prod").json()
    assert [row["id"] for row in listed] == [assessment.pk]
    detail = _client(carol).get(f"/api/v1/assessments/{assessment.pk}/").json()
    assert detail["cluster"] == "prod"
    assert detail["data_gaps"] == []
    assert _client(carol).get("/api/v1/assessments/999999/").status_code == 404
    missing = _client(carol).get(f"/api/v1/assessments/{assessment.pk}/scenario/")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["field"] == "scenario"


def _start(user: User, **body: Any) -> Any:
    return _client(user).post("/api/v1/assessments/", body, content_type="application/json")


def test_it_names_only_the_unknown_cluster_not_the_others(bob: User, cluster: Cluster) -> None:
    Cluster.objects.create(name="secret-lab")
    response = _start(bob, cluster="nope")
    assert response.json() == {
        "errors": [{"field": "cluster", "message": "no cluster named 'nope'"}]
    }
    assert "secret-lab" not in response.content.decode()
    assert "prod" not in response.content.decode()


def test_it_answers_an_identical_request_with_the_one_under_way(
    bob: User, alice: User, cluster: Cluster
) -> None:
    first = _start(bob, cluster="prod", window="24h")
    again = _start(alice, cluster="prod", window="24h")
    assert (first.status_code, first.json()["existing"]) == (202, False)
    assert (again.status_code, again.json()["existing"]) == (200, True)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created_by"] == "bob"
    assert Assessment.objects.count() == 1
    # Another window is another assessment; so is the same one once the first has finished.
    other = _start(bob, cluster="prod", window="48h")
    assert (other.status_code, other.json()["existing"]) == (202, False)
    Assessment.objects.filter(pk=first.json()["id"]).update(status=AssessmentStatus.RUNNING)
    assert _start(bob, cluster="prod", window="24h").status_code == 200
    Assessment.objects.filter(pk=first.json()["id"]).update(status=AssessmentStatus.FAILED)
    assert _start(bob, cluster="prod", window="24h").status_code == 202
    assert Assessment.objects.count() == 3


def test_it_limits_how_many_one_user_starts_a_minute(
    bob: User, alice: User, cluster: Cluster, settings: Any
) -> None:
    settings.ASSESSMENTS_PER_USER_PER_MINUTE = 2
    assert _start(bob, cluster="prod", window="1h").status_code == 202
    assert _start(bob, cluster="prod", window="2h").status_code == 202
    refused = _start(bob, cluster="prod", window="3h")
    assert refused.status_code == 429
    assert refused.json() == {
        "errors": [
            {
                "field": "(rate)",
                "message": (
                    "too many started: at most 2 per minute per user; "
                    f"try again in {refused['Retry-After']} s"
                ),
            }
        ]
    }
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Assessment.objects.count() == 2
    # The one under way is still answered (it starts nothing), and others are not limited.
    assert _start(bob, cluster="prod", window="1h").status_code == 200
    assert _start(alice, cluster="prod", window="3h").status_code == 202
    # Once the oldest is more than a minute old, one more may start.
    oldest = Assessment.objects.filter(created_by=bob).order_by("id").first()
    assert oldest is not None
    Assessment.objects.filter(pk=oldest.pk).update(
        created_at=oldest.created_at - timedelta(seconds=61)
    )
    assert _start(bob, cluster="prod", window="3h").status_code == 200  # alice's, under way
    assert _start(bob, cluster="prod", window="4h").status_code == 202
    assert _start(bob, cluster="prod", window="5h").status_code == 429


def test_it_computes_retry_after_from_the_oldest_start_in_the_minute(
    bob: User, cluster: Cluster, settings: Any
) -> None:
    settings.ASSESSMENTS_PER_USER_PER_MINUTE = 1
    assert _start(bob, cluster="prod", window="1h").status_code == 202
    Assessment.objects.update(created_at=timezone.now() - timedelta(seconds=45))
    refused = _start(bob, cluster="prod", window="2h")
    assert (refused.status_code, refused["Retry-After"]) == (429, "15")
