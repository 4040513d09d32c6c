"""The node-config endpoint: agents pull the desired config and report, with their token only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from probes.agent.desired import NodeConfig, Observed
from probes.models import Node
from probes.node_config import node_desired_config_set
from probes.services import node_register

pytestmark = pytest.mark.django_db
URL = "/api/v1/agent/config/"


def _agent() -> tuple[Node, APIClient]:
    node, token = node_register(cluster_name="prod", hostname="gpu-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return node, client


def _report(seq: int, **fields: object) -> dict[str, object]:
    base = Observed(1000.0, seq, 1000.0 + seq, "local", "serving", 0, True).to_json()
    return {**base, **fields}


def test_an_agent_pulls_its_desired_config() -> None:
    node, client = _agent()
    assert client.get(URL).json() == {
        "generation": 0, "config": None, "rollout_id": None, "probe_interval_s": 0.0,
        "probe_for_s": 0.0,
    }  # fmt: skip
    node_desired_config_set(node_id=node.id, config=NodeConfig({"max_num_seqs": 8}),
                            rollout_id=4, probe_interval_s=2, probe_for_s=60)  # fmt: skip
    node_desired_config_set(node_id=node.id, config=NodeConfig({"max_num_seqs": 16}))
    body = client.get(URL).json()
    assert (body["generation"], body["config"]) == (2, {"engine_args": {"max_num_seqs": 16}})


def test_a_report_is_stored_and_a_late_older_one_ignored() -> None:
    node, client = _agent()
    response = client.post(URL, _report(5, applied_generation=2), format="json")
    assert (response.status_code, response.json()) == (200, {"stored": True})
    node.refresh_from_db()
    assert node.observed_config["applied_generation"] == 2
    assert node.observed_config["received_at"] > 0
    assert node.last_seen is not None
    response = client.post(URL, _report(4, applied_generation=1), format="json")
    assert response.json() == {"stored": False}
    node.refresh_from_db()
    assert node.observed_config["applied_generation"] == 2


def test_a_malformed_report_is_refused_naming_the_field() -> None:
    node, client = _agent()
    response = client.post(URL, _report(1, state="sleeping"), format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "state"
    response = client.post(URL, _report(1, config={"engine_args": {"port": 1}}), format="json")
    assert response.json()["errors"][0]["field"] == "config.engine_args.port"
    node.refresh_from_db()
    assert node.observed_config == {}


def test_only_an_agent_token_gets_in(alice: User) -> None:
    assert APIClient().get(URL).status_code == 401
    session = APIClient()
    session.force_login(alice)
    assert session.get(URL).status_code in (401, 403)
    assert session.post(URL, _report(1), format="json").status_code in (401, 403)


def test_a_report_holding_a_nul_character_is_refused_naming_the_field() -> None:
    # PostgreSQL's jsonb cannot hold U+0000: this was a 500 after the report was read
    node, client = _agent()
    report = _report(1, config={"engine_args": {"served_model_name": "llama\x00"}})
    response = client.post(URL, report, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "config.engine_args.served_model_name"
    assert error["message"].startswith("contains a NUL character (U+0000)")
    node.refresh_from_db()
    assert node.observed_config == {}
