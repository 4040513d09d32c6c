"""The ingest API's column layout (one array per field): stored exactly like rows, errors
naming the field and the index, nothing half-stored; the row layout keeps working."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from probes.agent.batch import rows_to_columns
from probes.models import EngineSample, GpuSample, IngestBatch, RequestRecord
from tests.probes.helpers import (
    batch,
    engine_sample,
    gpu,
    gpu_sample,
    post,
    registered_node,
    request,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
NOW = time.time() - 300
HISTOGRAMS = {"e2e_request_latency_seconds": {"buckets": [[0.5, 2], ["+Inf", 3]], "sum": 1.5,
                                              "count": 3}}  # fmt: skip


def _rows() -> dict[str, list[dict[str, Any]]]:
    """Rows with nulls and left-out fields in different places."""
    return {
        "gpu_samples": [
            gpu_sample("GPU-0", NOW, energy_j=1.5e9, temperature_c=61),
            gpu_sample("GPU-0", NOW + 1, power_w=None, sm_active=0.5),
            gpu_sample("GPU-1", NOW, util_pct=100, mem_used_bytes=0),
            {"gpu_uuid": "GPU-1", "ts": NOW + 1, "util_pct": 0, "mem_used_bytes": 7},
        ],
        "engine_samples": [
            engine_sample(NOW, histograms=HISTOGRAMS),
            engine_sample(NOW + 1, kv_cache_usage=None),
        ],
        "requests": [
            request(NOW),
            request(NOW + 0.5, status="error", ttft_s=None),
            request(NOW + 1, prefix_block_hashes=[-(2**63), 3, 2**63 - 1], prefix_block_tokens=16),
        ],
    }


def _stored() -> dict[str, list[tuple[Any, ...]]]:
    fields = [f.name for f in GpuSample._meta.concrete_fields if f.name not in ("gpu", "pk")]
    engine = [f.name for f in EngineSample._meta.concrete_fields if f.name not in ("id", "node")]
    req = [f.name for f in RequestRecord._meta.concrete_fields if f.name not in ("id",)]
    return {
        "gpu_samples": sorted(GpuSample.objects.values_list("gpu__uuid", *fields)),
        "engine_samples": sorted(EngineSample.objects.values_list(*engine), key=repr),
        "requests": sorted(RequestRecord.objects.values_list(*req), key=repr),
    }


def _columns(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {name: rows_to_columns(value) for name, value in rows.items()}


def test_it_stores_columns_exactly_as_the_same_rows(client: Client) -> None:
    _node, token = registered_node()
    inventory = {"gpus": [gpu("GPU-0", 0), gpu("GPU-1", 1)]}
    columns = _columns(_rows())
    assert isinstance(columns["gpu_samples"], dict)
    assert columns["gpu_samples"]["power_w"][1] is None
    response = post(client, token, batch("cols", **inventory, **columns))
    assert response.status_code == 201, response.content
    assert response.json()["stored"] == {"gpu_samples": 4, "engine_samples": 2, "requests": 3}
    as_columns = _stored()
    for model in (GpuSample, EngineSample, RequestRecord, IngestBatch):
        model.objects.all().delete()
    response = post(client, token, batch("rows", **inventory, **_rows()))
    assert response.status_code == 201, response.content
    assert _stored() == as_columns
    sample = GpuSample.objects.get(gpu__uuid="GPU-0", util_pct=42.5, power_w=None)
    assert sample.sm_active == 0.5
    assert sample.ts.timestamp() == pytest.approx(NOW + 1, abs=1e-6)


def test_a_batch_may_mix_the_layouts_and_columns_may_leave_optional_fields_out(
    client: Client,
) -> None:
    _node, token = registered_node()
    samples = {"gpu_uuid": ["GPU-0", "GPU-0"], "ts": [NOW, NOW + 1], "util_pct": [1, 2.5],
               "mem_used_bytes": [10, 20]}  # fmt: skip
    payload = batch(gpus=[gpu()], gpu_samples=samples, requests=[request(NOW)])
    response = post(client, token, payload)
    assert response.status_code == 201, response.content
    assert sorted(GpuSample.objects.values_list("util_pct", "mem_used_bytes", "power_w")) == [
        (1.0, 10, None),
        (2.5, 20, None),
    ]
    assert RequestRecord.objects.get().status == "ok"  # the default, as for a row
    empty = post(client, token, batch("empty", gpus=[gpu()], gpu_samples={}, requests=[]))
    assert empty.json()["stored"] == {"gpu_samples": 0, "engine_samples": 0, "requests": 0}


GOOD: dict[str, list[Any]] = {
    "gpu_uuid": ["GPU-0", "GPU-0"], "ts": [NOW, NOW + 1], "util_pct": [10.0, 20.0],
    "mem_used_bytes": [1, 2],
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"util_pct": [10.0, 101.0]}, "gpu_samples.util_pct[1]", "between 0 and 100, got 101"),
        ({"util_pct": [10.0, "high"]}, "gpu_samples.util_pct[1]", "must be a number, got str"),
        ({"util_pct": [10.0, True]}, "gpu_samples.util_pct[1]", "must be a number, got bool"),
        ({"util_pct": [10.0, None]}, "gpu_samples.util_pct[1]", "required"),
        ({"ts": [NOW, 1.7e12]}, "gpu_samples.ts[1]", "Unix seconds"),
        ({"mem_used_bytes": [1, 2.5]}, "gpu_samples.mem_used_bytes[1]", "integer"),
        ({"mem_used_bytes": [-1, 2]}, "gpu_samples.mem_used_bytes[0]", "must be >= 0, got -1"),
        ({"mem_used_bytes": [1, 2**63]}, "gpu_samples.mem_used_bytes[1]", "at most 922337"),
        ({"gpu_uuid": ["GPU-0", ""]}, "gpu_samples.gpu_uuid[1]", "1-96 characters"),
        ({"power_w": [1.0, -5]}, "gpu_samples.power_w[1]", "must be >= 0, got -5"),
        ({"ts": None}, "gpu_samples.ts", "required"),
        ({"ts": [NOW]}, "gpu_samples.ts", "has 1 values; gpu_uuid has 2"),
        ({"ts": "now"}, "gpu_samples.ts", "must be an array"),
        ({"colour": ["red", "red"]}, "gpu_samples.colour", "unknown field"),
        ({"gpu_uuid": ["GPU-0", "GPU-X"]}, "gpu_samples.gpu_uuid[1]", "unknown GPU 'GPU-X'"),
    ],
)  # fmt: skip
def test_it_names_the_field_and_the_index_and_stores_nothing(
    client: Client, change: dict[str, Any], field: str, message: str
) -> None:
    _node, token = registered_node()
    columns = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    good_rows = [request(NOW)]
    response = post(client, token, batch(gpus=[gpu()], gpu_samples=columns, requests=good_rows))
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert GpuSample.objects.count() == RequestRecord.objects.count() == 0
    assert not IngestBatch.objects.exists()


def test_it_names_each_bad_value_of_other_lists_and_says_what_a_list_should_be(
    client: Client,
) -> None:
    _node, token = registered_node()
    requests = rows_to_columns([request(NOW), request(NOW, status="fine", prompt_tokens=-2)])
    engine = rows_to_columns([engine_sample(NOW, histograms={"x": {"buckets": "no"}})])
    response = post(client, token, batch(requests=requests, engine_samples=engine,
                                         gpu_samples={"nothing": "known"}))  # fmt: skip
    assert response.status_code == 400
    assert {(e["field"], e["message"].split(":")[0]) for e in response.json()["errors"]} >= {
        ("requests.status[1]", "must be one of ok, error, aborted"),
        ("requests.prompt_tokens[1]", "must be between 0 and 2147483647, got -2"),
        ("engine_samples.histograms[0]", "'x'"),
        ("gpu_samples", "must be a list of row objects, or an object of columns (one array "
                        "per field)"),
    }  # fmt: skip
    assert not IngestBatch.objects.exists()


@pytest.mark.django_db(transaction=True)  # the store's own transaction is the outermost
def test_a_repeated_batch_id_and_samples_stored_before_are_answered_as_with_rows(
    client: Client,
) -> None:
    _node, token = registered_node()
    first = batch("c-1", gpus=[gpu()], gpu_samples=GOOD)
    assert post(client, token, first).status_code == 201
    again = post(client, token, first)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    overlapping = {name: [*values, values[-1]] for name, values in GOOD.items()}
    overlapping["ts"][-1] = NOW + 2
    response = post(client, token, batch("c-2", gpus=[gpu()], gpu_samples=overlapping))
    assert response.status_code == 201
    assert response.json()["stored"]["gpu_samples"] == 1
    assert response.json()["duplicate_rows"] == 2
    assert GpuSample.objects.count() == 3
    stored = IngestBatch.objects.get(batch_id="c-2")
    assert (stored.gpu_samples, stored.duplicate_rows) == (1, 2)
    assert stored.min_ts is not None
    assert stored.max_ts is not None
    assert stored.min_ts.timestamp() == pytest.approx(NOW)
    assert stored.max_ts.timestamp() == pytest.approx(NOW + 2)


def test_the_schema_describes_both_layouts(client: Client, carol: Any) -> None:
    generated = SchemaGenerator(urlconf="probes.urls").get_schema(request=None, public=True)
    schemas = generated["components"]["schemas"]
    either = schemas["IngestGpuSampleRows"]["oneOf"]
    assert either[0] == {"type": "array", "items": {"$ref": "#/components/schemas/IngestGpuSample"}}
    assert either[1] == {"$ref": "#/components/schemas/IngestGpuSampleColumns"}
    columns = schemas["IngestGpuSampleColumns"]
    assert set(columns["required"]) == {"gpu_uuid", "ts", "util_pct", "mem_used_bytes"}
    assert columns["properties"]["util_pct"]["items"]["maximum"] == 100
    assert columns["properties"]["power_w"]["items"]["nullable"] is True
    batch_doc = schemas["IngestBatch"]["properties"]
    for name in ("gpu_samples", "engine_samples", "requests"):
        assert "Columns" in str(schemas[batch_doc[name]["$ref"].rsplit("/", 1)[1]])
    assert batch_doc["gpus"]["type"] == "array"  # the inventory: rows only
    client.force_login(carol)
    response = client.get("/api/schema/")
    if response.status_code == 200:  # the whole site's schema (other apps' views included)
        served = yaml.safe_load(response.content)["components"]["schemas"]
        assert served["IngestGpuSampleColumns"] == columns


SQLITE = """
import gzip, json, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from probes.agent.batch import rows_to_columns
from probes.models import GpuSample
from probes.services import node_register

node, token = node_register(cluster_name="demo", hostname="gpu-1")
now = time.time() - 120
rows = [{"gpu_uuid": "GPU-0", "ts": now + i, "util_pct": 10.0 * i, "mem_used_bytes": 5,
         "power_w": None if i % 2 else 300.0} for i in range(5)]
def post(batch_id, samples):
    body = {"batch_id": batch_id, "gpus": [{"uuid": "GPU-0", "index": 0, "name": "H100",
            "memory_bytes": 80}], "gpu_samples": rows_to_columns(samples)}
    return Client(HTTP_HOST="localhost").post(
        "/api/v1/ingest/", data=gzip.compress(json.dumps(body).encode()),
        content_type="application/json", HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION="Bearer " + token,
    )
first = post("b1", rows)
overlap = post("b2", rows + [{**rows[0], "ts": now + 10}])
print(json.dumps({"statuses": [first.status_code, overlap.status_code],
                  "overlap": overlap.json(),
                  "powers": sorted(map(str, GpuSample.objects.values_list("power_w", flat=True)))}))
"""


def test_the_sqlite_demo_takes_columns_too(tmp_path: Path) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", SQLITE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [201, 201]
    assert result["overlap"]["stored"]["gpu_samples"] == 1
    assert result["overlap"]["duplicate_rows"] == 5
    assert result["powers"] == ["300.0", "300.0", "300.0", "300.0", "None", "None"]
