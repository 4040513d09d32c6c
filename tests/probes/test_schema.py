"""The OpenAPI schema at /api/schema/, and schemathesis fuzzing the ingest API: no 5xx."""

from typing import Any

import pytest
import schemathesis
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.probes.helpers import registered_node


@pytest.mark.django_db
def test_it_serves_the_ingest_api_in_the_openapi_schema(client: Client, carol) -> None:
    client.force_login(carol)
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    operation = schema["paths"]["/api/v1/ingest/"]["post"]
    assert operation["operationId"] == "ingest_batch"
    assert {"201", "200", "400", "401", "413", "415"} <= set(operation["responses"])
    assert operation["security"] == [{"agentToken": []}]
    assert schema["components"]["securitySchemes"]["agentToken"]["scheme"] == "bearer"
    sample = schema["components"]["schemas"]["IngestGpuSample"]
    assert set(sample["required"]) == {"gpu_uuid", "ts", "util_pct", "mem_used_bytes"}
    assert sample["properties"]["util_pct"]["maximum"] == 100


@pytest.mark.integration
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_the_ingest_api_finds_no_server_error(
    mode: GenerationMode, live_server: Any
) -> None:
    """Schemathesis cases from the generated schema, sent with a valid and a wrong token."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    operation = schemathesis.openapi.from_dict(generated)["/api/v1/ingest/"]["POST"]
    _node, token = registered_node(hostname="fuzz")
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=120, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )  # fmt: skip
    def fuzz(case: Any) -> None:
        for bearer in (token, "wrong-token"):
            response = case.call_and_validate(
                base_url=live_server.url,
                headers={"Authorization": f"Bearer {bearer}"},
                checks=[not_a_server_error],
            )
            statuses.append(response.status_code)

    fuzz()
    assert statuses
    assert all(status < 500 for status in statuses)
    assert 401 in statuses
    if mode is GenerationMode.NEGATIVE:
        assert 400 in statuses
