"""A deployment's config.json in an agent's batch: stored once, refused naming the value."""

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from django.test import Client

from advisor.engine.catalog import CONFIG_DIR
from probes.agent.batch import BatchBuilder
from probes.agent.config import VllmTarget
from probes.agent.samplers.vllm import VllmSampler
from probes.hf_config import config_reading
from probes.models import ModelDeployment
from tests.probes.agent.stub_http import serving, text
from tests.probes.helpers import batch, post, registered_node

AGENT_DATA = Path(__file__).parent / "agent" / "data"

pytestmark = pytest.mark.django_db

LLAMA_8B = json.loads((CONFIG_DIR / "meta-llama--Meta-Llama-3.1-8B.json").read_text())


def _deployment(**extra: object) -> dict[str, object]:
    return {"served_name": "acme", "model_id": "acme/acme-8b", **extra}


def test_it_stores_the_agents_config_with_its_source(client: Client) -> None:
    _node, token = registered_node("gpu-7")
    response = post(client, token, batch(deployments=[_deployment(hf_config=LLAMA_8B)]))
    assert response.status_code == 201, response.content
    deployment = ModelDeployment.objects.get(served_name="acme")
    assert deployment.hf_config == LLAMA_8B
    assert deployment.hf_config_source == "agent gpu-7"
    assert deployment.hf_config_at is not None


def test_it_leaves_a_stored_config_alone_when_the_same_one_comes_again(client: Client) -> None:
    _node, token = registered_node("gpu-7")
    post(client, token, batch("b-1", deployments=[_deployment(hf_config=LLAMA_8B)]))
    first = ModelDeployment.objects.get(served_name="acme").hf_config_at
    post(client, token, batch("b-2", deployments=[_deployment(hf_config=LLAMA_8B)]))
    post(client, token, batch("b-3", deployments=[_deployment()]))  # later batches: none
    deployment = ModelDeployment.objects.get(served_name="acme")
    assert (deployment.hf_config, deployment.hf_config_at) == (LLAMA_8B, first)


def test_it_replaces_an_uploaded_config_when_the_agent_reads_another(client: Client) -> None:
    _node, token = registered_node("gpu-7")
    post(client, token, batch("b-1", deployments=[_deployment()]))
    ModelDeployment.objects.filter(served_name="acme").update(
        hf_config={"model_type": "old"}, hf_config_source="uploaded by alice"
    )
    post(client, token, batch("b-2", deployments=[_deployment(hf_config=LLAMA_8B)]))
    deployment = ModelDeployment.objects.get(served_name="acme")
    assert (deployment.hf_config, deployment.hf_config_source) == (LLAMA_8B, "agent gpu-7")


def test_it_stores_a_config_the_engine_cannot_read_and_says_why(client: Client) -> None:
    _node, token = registered_node()
    broken = {"model_type": "mystery", "hidden_size": "wide"}
    response = post(client, token, batch(deployments=[_deployment(hf_config=broken)]))
    assert response.status_code == 201, response.content
    stored = ModelDeployment.objects.get(served_name="acme").hf_config
    assert stored == broken
    assert config_reading(stored, name="acme/acme-8b").error == (
        "config.json of acme/acme-8b: hidden_size must be a positive integer, got 'wide'"
    )


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"text_config": {"model_type": "x\x00"}},
         "deployments[0].hf_config.text_config.model_type",
         "must not contain NUL (\\u0000) characters"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
         "deployments[0].hf_config.a.b.c.d.e.f.g.h", "is nested more than 8 levels deep"),
        ({"ignore": ["x" * 1000] * 300}, "deployments[0].hf_config",
         "must be at most 256 KiB as JSON, got 300912 bytes"),  # 300 x 1002 + 299 + 13
        (["not", "an", "object"], "deployments[0].hf_config",
         "must be a JSON object (a config.json), got list"),
    ],
)  # fmt: skip
def test_it_refuses_a_config_it_could_not_store_naming_the_value(
    client: Client, config: object, field: str, message: str
) -> None:
    _node, token = registered_node()
    response = post(client, token, batch(deployments=[_deployment(hf_config=config)]))
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": field, "message": message}]
    assert not ModelDeployment.objects.exists()


def test_it_documents_the_field_in_the_openapi_schema(client: Client, carol) -> None:
    client.force_login(carol)
    schema = yaml.safe_load(client.get("/api/schema/").content)
    field = schema["components"]["schemas"]["IngestDeployment"]["properties"]["hf_config"]
    assert field["type"] == "object"
    assert "256 KiB" in field["description"]


def test_an_agents_batch_carries_the_model_dirs_config_to_the_deployment(
    client: Client, tmp_path: Path
) -> None:
    """The agent's sampler and batch builder against the real ingest API, in-process."""
    model_dir = tmp_path / "models" / "qwen3-moe"
    model_dir.mkdir(parents=True)
    config_text = (CONFIG_DIR / "Qwen--Qwen3-30B-A3B.json").read_text()
    (model_dir / "config.json").write_text(config_text)
    metrics = (AGENT_DATA / "vllm-0.32-idle.txt").read_text().replace("tiny-llama", "moe")
    models = json.dumps({"data": [{"id": "moe", "root": str(model_dir)}]})
    routes = {("GET", "/metrics"): text(metrics),
              ("GET", "/v1/models"): text(models, content_type="application/json")}  # fmt: skip
    builder = BatchBuilder()
    with serving(routes) as url:
        sampler = VllmSampler(VllmTarget(url=url), httpx.Client(), "gpu-7", 10.0, model_env={})
        builder.add(sampler.sample(time.time() - 60))
        builder.add(sampler.sample(time.time() - 59))
    sealed = builder.seal({})
    _node, token = registered_node("gpu-7")
    response = post(client, token, sealed.body_gz, compress=False, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 201, response.content
    deployment = ModelDeployment.objects.get(served_name="moe")
    assert (deployment.model_id, deployment.hf_config_source) == (str(model_dir), "agent gpu-7")
    assert deployment.hf_config == json.loads(config_text)
    reading = config_reading(deployment.hf_config, name=deployment.model_id)
    assert reading.description == (
        "MoE, 128 routed experts top-8, 48 layers, full attention (GQA 32/4 heads x 128), "
        "16-bit weights (or the deployment's quantization)"
    )
