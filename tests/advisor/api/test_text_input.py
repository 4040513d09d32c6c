"""Text PostgreSQL cannot store (NUL, unpaired surrogates) is a 400 naming the field, not a 500.

SQLite stores a NUL, so on SQLite these pass with or without the checks; on PostgreSQL
(CI) each one was a 500 before them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from advisor.models import Assessment, BenchmarkJob, Rollout
from advisor.text import json_text_problem, text_problem
from probes.models import Cluster
from tests.advisor.rollouts.helpers import Agent, fleet
from tests.support.text import NUL

pytestmark = pytest.mark.django_db


def _as(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _raw_json(client: APIClient, path: str, text: str) -> Any:
    # Written by hand: "\ud800" is valid JSON that json.dumps would not produce from a str.
    return client.post(path, text, content_type="application/json")


def test_it_finds_nul_and_unpaired_surrogates_and_nothing_else() -> None:
    assert text_problem("ab\x00c") == NUL.format(2)
    assert text_problem("x\ud800") == (
        "contains an unpaired surrogate (U+D800) at position 1, which cannot be stored"
    )
    assert text_problem("ok ünïcödé \U0001f600 \x01 \ufffd") is None
    assert json_text_problem({"a": [1, {"b": "ok"}, {"c": "\x00"}]}) == ("a[2].c", NUL.format(0))
    assert json_text_problem({"a": {"k\x00": 1}}) == ("a['k\\x00']", "the key " + NUL.format(1))
    assert json_text_problem({"a": 1.5, "b": None, "c": True}) is None


def test_it_refuses_a_nul_in_the_assessment_list_filter(carol: User) -> None:
    response = _as(carol).get("/api/v1/assessments/?cluster=%00")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "cluster", "message": NUL.format(0)}]}


def test_it_answers_a_surrogate_sequence_in_a_query_as_replaced_text(carol: User) -> None:
    # Django decodes %ED%A0%80 (UTF-8 of U+D800, invalid) to U+FFFD: storable, just unknown.
    response = _as(carol).get("/api/v1/assessments/?cluster=%ED%A0%80")
    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('{"cluster": "pr\\u0000od"}', "cluster", NUL.format(2)),
        ('{"cluster": "prod", "window": "7d\\u0000"}', "window", NUL.format(2)),
        ('{"cluster": "\\ud800"}', "cluster",
         "contains an unpaired surrogate (U+D800) at position 0, which cannot be stored"),
    ],
)  # fmt: skip
def test_it_refuses_unstorable_text_in_an_assessment_and_stores_nothing(
    bob: User, body: str, field: str, message: str
) -> None:
    Cluster.objects.create(name="prod")
    response = _raw_json(_as(bob), "/api/v1/assessments/", body)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": field, "message": message}]}
    assert not Assessment.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"title": "big\x00ger", "engine_args": {"max_num_seqs": 512}}, "change.title",
         NUL.format(3)),
        ({"title": "t", "engine_args": {"served_model_name": ["a", "\x00"]}},
         "change.engine_args.served_model_name[1]", NUL.format(0)),
        ({"title": "t", "engine_args": {"max\x00": 1}}, "change.engine_args['max\\x00']",
         "the key " + NUL.format(3)),
    ],
)  # fmt: skip
def test_it_refuses_unstorable_text_anywhere_in_a_rollout_and_stores_nothing(
    bob: User, change: dict[str, Any], field: str, message: str
) -> None:
    nodes = fleet(1).nodes
    body = json.dumps({"nodes": [nodes[0].id], "change": change, "reason": "cheaper"})
    response = _raw_json(_as(bob), "/api/v1/rollouts/", body)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": field, "message": message}]}
    assert not Rollout.objects.exists()


def test_it_refuses_a_surrogate_in_a_rollout_reason(bob: User) -> None:
    nodes = fleet(1).nodes
    body = '{"nodes": [NODE], "change": {"title": "t"}, "reason": "x\\udfff"}'
    body = body.replace("NODE", str(nodes[0].id))
    response = _raw_json(_as(bob), "/api/v1/rollouts/", body)
    assert response.status_code == 400
    message = "contains an unpaired surrogate (U+DFFF) at position 1, which cannot be stored"
    assert response.json()["errors"] == [{"field": "reason", "message": message}]
    assert not Rollout.objects.exists()


def test_it_refuses_a_nul_in_a_rollout_action_note(alice: User, bob: User) -> None:
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    change = {"title": "t", "engine_args": {"max_num_seqs": 512}}
    proposed = _as(bob).post(
        "/api/v1/rollouts/", {"nodes": [nodes[0].id], "change": change}, format="json"
    )
    assert proposed.status_code == 201
    rollout_id = proposed.json()["id"]
    response = _raw_json(
        _as(alice), f"/api/v1/rollouts/{rollout_id}/approve/", '{"note": "ok\\u0000"}'
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "note", "message": NUL.format(2)}]
    assert Rollout.objects.get(pk=rollout_id).status == "pending"


def test_it_refuses_a_nul_nested_in_a_benchmark_job(bob: User) -> None:
    body = '{"endpoint": 1, "kind": "run", "workload": {"kind": "poisson", "name": "\\u0000"}}'
    response = _raw_json(_as(bob), "/api/v1/benchmarks/", body)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "workload.name", "message": NUL.format(0)}]
    assert not BenchmarkJob.objects.exists()


def test_it_refuses_a_nul_in_an_api_form_body(bob: User) -> None:
    response = _as(bob).post("/api/v1/assessments/", {"cluster": "a\x00"}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "cluster", "message": NUL.format(1)}]}
    assert not Assessment.objects.exists()
