"""A deployment's page says what the engine read from its config.json; operators upload one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from advisor.engine.catalog import CONFIG_DIR
from probes.models import ModelDeployment
from tests.dashboard.conftest import SmallFleet

pytestmark = pytest.mark.django_db

DEEPSEEK_V3 = (CONFIG_DIR / "deepseek-ai--DeepSeek-V3.json").read_bytes()


def _page(client: Client, deployment: ModelDeployment) -> str:
    response = client.get(f"/deployments/{deployment.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _upload(client: Client, deployment: ModelDeployment, body: bytes) -> Any:
    upload = SimpleUploadedFile("config.json", body, content_type="application/json")
    return client.post(f"/deployments/{deployment.pk}/config/", {"file": upload})


def test_the_page_says_what_the_engine_read_and_its_assumptions(
    client: Client, carol: User, small_fleet: SmallFleet
) -> None:
    ModelDeployment.objects.filter(pk=small_fleet.deployment.pk).update(
        hf_config=json.loads(DEEPSEEK_V3), hf_config_source="agent gpu-a",
        hf_config_at=datetime(2025, 3, 9, 8, 30, tzinfo=UTC),
    )  # fmt: skip
    client.force_login(carol)
    html = _page(client, small_fleet.deployment)
    assert (
        "MoE, 256 routed experts top-8 + 1 shared, 61 layers (3 dense first), "
        "MLA (kv_lora_rank 512 + rope 64), fp8 block weights"
    ) in html
    # 61 layers x (512 + 64) latent elements x 2 bytes
    assert "70,272 bytes" in html
    assert "fp8 (fp8-block, 8 bits per weight)" in html
    assert (
        "1 multi-token-prediction layer(s) not counted (vLLM loads them only for speculative "
        "decoding)"
    ) in html
    assert "config.json agent gpu-a, 2025-03-09 08:30 UTC" in html
    assert 'data-testid="config-upload"' not in html  # a viewer may not upload


def test_the_page_names_why_a_stored_config_cannot_be_read(
    client: Client, carol: User, small_fleet: SmallFleet
) -> None:
    ModelDeployment.objects.filter(pk=small_fleet.deployment.pk).update(
        hf_config={"hidden_size": 4096}, hf_config_source="agent gpu-a"
    )
    client.force_login(carol)
    html = _page(client, small_fleet.deployment)
    assert "The stored config.json cannot be read: config.json of m: missing " in html
    assert "num_attention_heads" in html


def test_an_operator_uploads_a_config_json(
    client: Client, bob: User, small_fleet: SmallFleet
) -> None:
    client.force_login(bob)
    assert 'data-testid="config-upload"' in _page(client, small_fleet.deployment)
    response = _upload(client, small_fleet.deployment, DEEPSEEK_V3)
    assert response.status_code == 302
    assert response["Location"] == f"/deployments/{small_fleet.deployment.pk}/"
    stored = ModelDeployment.objects.get(pk=small_fleet.deployment.pk)
    assert stored.hf_config == json.loads(DEEPSEEK_V3)
    assert stored.hf_config_source == "uploaded by bob"
    html = _page(client, small_fleet.deployment)
    assert "config.json stored; the engine read: MoE, 256 routed experts" in html
    assert "config.json uploaded by bob, " in html


def test_a_viewer_may_not_upload(client: Client, carol: User, small_fleet: SmallFleet) -> None:
    client.force_login(carol)
    response = _upload(client, small_fleet.deployment, DEEPSEEK_V3)
    assert response.status_code == 403
    assert ModelDeployment.objects.get(pk=small_fleet.deployment.pk).hf_config is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"hidden_size": 4096,', "config.json: not valid JSON: Expecting property name "
         "enclosed in double quotes at line 1 column 22"),
        (b"[1, 2]", "config.json: must be a JSON object (a config.json), got list"),
        (b'{"text_config": {"model_type": "x\\u0000"}}',
         "config.json.text_config.model_type: must not contain NUL (\\u0000) characters"),
        (b"\xff\xfe{}", "config.json: not UTF-8 text (invalid start byte at byte 0)"),
        (b'{"hidden_size": 4096}',
         "config.json: the engine cannot read it: missing num_attention_heads"),
        (b" " * (256 * 1024 + 1), "262145 bytes; at most 256 KiB"),
    ],
)  # fmt: skip
def test_an_upload_is_refused_naming_the_problem(
    client: Client, bob: User, small_fleet: SmallFleet, body: bytes, error: str
) -> None:
    client.force_login(bob)
    response = _upload(client, small_fleet.deployment, body)
    assert response.status_code == 400
    assert error in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")
    assert ModelDeployment.objects.get(pk=small_fleet.deployment.pk).hf_config is None


def test_an_upload_needs_the_csrf_token(bob: User, small_fleet: SmallFleet) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert _upload(client, small_fleet.deployment, DEEPSEEK_V3).status_code == 403
    assert ModelDeployment.objects.get(pk=small_fleet.deployment.pk).hf_config is None
