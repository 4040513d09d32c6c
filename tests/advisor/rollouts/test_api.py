"""The rollout API: roles (viewers read, operators propose, admins act), errors naming fields."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from advisor.models import Rollout
from tests.advisor.rollouts.helpers import Agent, fleet

pytestmark = pytest.mark.django_db
CHANGE = {"title": "bigger batches", "engine_args": {"max_num_seqs": 512}}


def _as(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _propose(client: APIClient, **body: Any) -> Any:
    return client.post("/api/v1/rollouts/", body, format="json")


def test_an_operator_proposes_and_only_an_admin_starts(alice: User, bob: User, carol: User) -> None:
    nodes = fleet(2).nodes
    for node in nodes:
        Agent(node).report()
    assert _propose(_as(carol), nodes=[nodes[0].id], change=CHANGE).status_code == 403
    response = _propose(_as(bob), nodes=[n.id for n in nodes], change=CHANGE, reason="cheaper")
    assert response.status_code == 201
    rollout_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    assert [t["canary"] for t in response.json()["targets"]] == [True, False]
    for user in (carol, bob):
        for action in ("start", "pause", "abort", "rollback", "approve"):
            denied = _as(user).post(f"/api/v1/rollouts/{rollout_id}/{action}/", format="json")
            assert denied.status_code == 403, (user, action)
    assert Rollout.objects.get(id=rollout_id).status == "pending"
    started = _as(alice).post(
        f"/api/v1/rollouts/{rollout_id}/start/", {"note": "go"}, format="json"
    )
    assert started.status_code == 200
    body = started.json()
    assert body["status"] == "canary"
    assert body["started_by"] == "alice"
    assert [(e["actor"], e["from"], e["to"], e["message"]) for e in body["events"]] == [
        ("bob", "", "pending", "cheaper"), ("alice", "pending", "canary", "go"),
    ]  # fmt: skip


def test_errors_name_the_field(bob: User) -> None:
    nodes = fleet(1).nodes
    client = _as(bob)
    bad = _propose(client, nodes=[nodes[0].id], change={**CHANGE, "engine_args": {"Bad": 1}})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "change.engine_args.Bad"
    assert (
        _propose(client, nodes=[nodes[0].id], change=CHANGE, speed=2).json()["errors"][0]["field"]
        == "speed"
    )
    not_json = client.post("/api/v1/rollouts/", "{", content_type="application/json")
    assert not_json.status_code == 400
    assert not_json.json()["errors"][0]["field"] == "(body)"
    assert not Rollout.objects.exists()


def test_a_second_rollout_to_a_node_is_a_409_with_a_clear_message(bob: User) -> None:
    nodes = fleet(1).nodes
    first = _propose(_as(bob), nodes=[nodes[0].id], change=CHANGE).json()["id"]
    second = _propose(_as(bob), nodes=[nodes[0].id], change=CHANGE)
    assert second.status_code == 409
    assert second.json()["errors"] == [{
        "field": "nodes",
        "message": f"node gpu-0 is already in rollout #{first} (pending); "
                   "wait until it is over or abort it first",
    }]  # fmt: skip


def test_anyone_with_a_role_reads_rollouts_and_the_ledger(bob: User, carol: User) -> None:
    nodes = fleet(1).nodes
    rollout_id = _propose(_as(bob), nodes=[nodes[0].id], change=CHANGE).json()["id"]
    viewer = _as(carol)
    assert [r["id"] for r in viewer.get("/api/v1/rollouts/").json()] == [rollout_id]
    detail = viewer.get(f"/api/v1/rollouts/{rollout_id}/").json()
    assert detail["change"]["engine_args"] == {"max_num_seqs": 512}
    assert detail["ledger"] is None
    assert viewer.get("/api/v1/rollouts/999999/").status_code == 404
    assert viewer.get("/api/v1/rollout-ledger/").json() == []
    assert APIClient().get("/api/v1/rollouts/").status_code in (401, 403)
