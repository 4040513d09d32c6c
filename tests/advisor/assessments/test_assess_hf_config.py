"""Assessments model a deployment from its stored config.json, or name it as a data gap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from advisor.engine.catalog import CONFIG_DIR
from advisor.engine.context import AssessmentContext
from advisor.engine.scenario import Scenario
from advisor.models import Assessment
from advisor.selectors.assessment_fleet import fleet_of
from advisor.services import assessments
from advisor.services.assessment_engine import EngineOutcome
from probes.models import ModelDeployment
from tests.advisor.assessments.fleet import TRACE_END, LabFleet, fleet_build

QWEN3_30B_A3B = json.loads((CONFIG_DIR / "Qwen--Qwen3-30B-A3B.json").read_text())


@pytest.fixture
def lab(db: Any) -> LabFleet:
    fleet = fleet_build(days=2, interval_s=300)
    # A model id nobody's catalog knows: only its config.json can say what it is.
    ModelDeployment.objects.filter(pk=fleet.chat.pk).update(model_id="acme/chat-9000")
    return fleet


def _chat(lab: LabFleet) -> Any:
    return next(d for d in fleet_of(cluster=lab.cluster).deployments if d.served_name == "chat")


def test_it_models_a_deployment_from_its_stored_config(lab: LabFleet) -> None:
    ModelDeployment.objects.filter(pk=lab.chat.pk).update(hf_config=QWEN3_30B_A3B)
    chat = _chat(lab)
    assert chat.problems == ()
    assert chat.model is not None
    assert chat.model.name == "acme--chat-9000@chat"
    # Qwen3-30B-A3B: 30.5 B parameters, 3.35 B active (8 of 128 experts), 48 layers x 4 KV
    # heads x 128 x 2 (K, V) x 2 bytes = 98,304 KV bytes per token.
    assert (chat.model.total_params, chat.model.active_params) == (30_532_122_624, 3_353_032_704)
    assert chat.model.kv_bytes_per_token(2.0) == 98_304.0
    assert chat.model_config == QWEN3_30B_A3B


def test_it_names_a_deployment_with_no_model_and_no_config_as_a_gap(lab: LabFleet) -> None:
    assert _chat(lab).problems == (
        "model 'acme/chat-9000' is not in the engine's catalog and no config.json was "
        "reported: upload one on its page",
    )


def test_it_names_the_config_error_when_the_catalog_cannot_help(lab: LabFleet) -> None:
    ModelDeployment.objects.filter(pk=lab.chat.pk).update(hf_config={"hidden_size": 4096})
    assert _chat(lab).problems == (
        "model 'acme/chat-9000' is not in the engine's catalog and its config.json cannot be "
        "read: config.json of acme--chat-9000@chat: missing num_attention_heads (upload a "
        "corrected one on its page)",
    )


def test_it_falls_back_to_the_catalog_when_the_config_cannot_be_read(lab: LabFleet) -> None:
    ModelDeployment.objects.filter(pk=lab.chat.pk).update(
        model_id="meta-llama/Llama-3-8B-Instruct", hf_config={"hidden_size": 4096}
    )
    chat = _chat(lab)
    assert (chat.problems, chat.model.name if chat.model else None) == ((), "Llama-3-8B")
    assert chat.model_config is None


def test_it_assesses_the_deployment_with_the_config_in_the_scenario(
    lab: LabFleet, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    ModelDeployment.objects.filter(pk=lab.chat.pk).update(hf_config=QWEN3_30B_A3B)
    outcome = EngineOutcome("test", {"deployments": {}}, {}, {"fleet_plan": {}})
    monkeypatch.setattr(assessments, "scenario_run", lambda scenario, *, progress: outcome)
    with django_capture_on_commit_callbacks(execute=True):
        created = assessments.assessment_create(cluster="lab", window="2d", end=TRACE_END)
    assessment = Assessment.objects.get(pk=created.pk)
    assert [gap["deployment"] for gap in assessment.data_gaps] == ["llama-8b"]
    scenario = Scenario.from_json(assessment.scenario)
    [chat] = scenario.deployments
    assert (chat.name, chat.model, chat.model_path) == (
        "chat", "acme--chat-9000@chat", "acme/chat-9000",
    )  # fmt: skip
    assert dict(scenario.models) == {"acme--chat-9000@chat": QWEN3_30B_A3B}
    # The engine reads the same model back from the stored scenario (what-ifs included).
    context = AssessmentContext(scenario)
    assert context.problems == {}
    assert context.resolved["chat"].model.total_params == 30_532_122_624
