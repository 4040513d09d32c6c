"""The ingest API: token auth, batch ids, validation errors naming the field, limits."""

import gzip
import json
import time

import pytest
from django.test import Client, override_settings

from probes.models import (
    EngineSample,
    Gpu,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
)
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


def _nothing_stored() -> bool:
    return (
        GpuSample.objects.count() == 0
        and EngineSample.objects.count() == 0
        and RequestRecord.objects.count() == 0
        and IngestBatch.objects.count() == 0
    )


def test_it_stores_a_batch_and_registers_the_inventory(client: Client) -> None:
    node, token = registered_node()
    now = time.time() - 100
    payload = batch(
        gpus=[gpu("GPU-0", 0), gpu("GPU-1", 1), gpu("MIG-x", 0, mig_parent_uuid="GPU-1")],
        deployments=[{"served_name": "llama", "model_id": "meta/llama", "gpu_uuids": ["GPU-0"]}],
        gpu_samples=[gpu_sample("GPU-0", now + i) for i in range(5)] + [gpu_sample("GPU-1", now)],
        engine_samples=[engine_sample(now, histograms={
            "time_to_first_token_seconds": {"buckets": [[0.1, 3], ["+Inf", 4]], "sum": 0.9,
                                            "count": 4}})],
        requests=[request(now), request(now + 1, status="error")],
        host={"os": "Linux", "cpu_count": 64},
    )  # fmt: skip
    response = post(client, token, payload)
    assert response.status_code == 201, response.content
    assert response.json() == {
        "batch_id": "b-1",
        "status": "stored",
        "stored": {"gpu_samples": 6, "engine_samples": 1, "requests": 2},
        "duplicate_rows": 0,
    }
    assert GpuSample.objects.filter(gpu__uuid="GPU-0").count() == 5
    sample = GpuSample.objects.get(gpu__uuid="GPU-1")
    assert sample.util_pct == 42.5
    assert sample.ts.timestamp() == pytest.approx(now, abs=1e-6)
    mig = Gpu.objects.get(uuid="MIG-x")
    assert mig.mig_parent == Gpu.objects.get(uuid="GPU-1")
    deployment = ModelDeployment.objects.get(served_name="llama")
    assert deployment.cluster == node.cluster
    assert deployment.model_id == "meta/llama"
    assert list(deployment.gpus.values_list("uuid", flat=True)) == ["GPU-0"]
    engine = EngineSample.objects.get()
    assert engine.instance == "gpu-1:8000"
    assert engine.node == node
    assert isinstance(engine.histograms, dict)
    assert engine.histograms["time_to_first_token_seconds"]["buckets"][-1] == ["+Inf", 4.0]
    assert sorted(RequestRecord.objects.values_list("status", "source")) == [
        ("error", "proxy"),
        ("ok", "proxy"),
    ]
    node.refresh_from_db()
    assert node.last_seen is not None
    assert node.host_info == {"os": "Linux", "cpu_count": 64}
    assert node.agent_version == "test"
    batch_row = IngestBatch.objects.get()
    assert (batch_row.gpu_samples, batch_row.engine_samples, batch_row.requests) == (6, 1, 2)
    assert batch_row.min_ts is not None
    assert batch_row.max_ts is not None
    assert batch_row.min_ts.timestamp() == pytest.approx(now)
    assert batch_row.max_ts.timestamp() == pytest.approx(now + 4)


def test_it_answers_a_repeated_batch_id_as_already_stored(client: Client) -> None:
    _node, token = registered_node()
    payload = batch(gpus=[gpu()], gpu_samples=[gpu_sample()], requests=[request()])
    assert post(client, token, payload).status_code == 201
    again = post(client, token, payload)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert GpuSample.objects.count() == 1
    assert RequestRecord.objects.count() == 1
    assert IngestBatch.objects.count() == 1


def test_it_keeps_the_agents_cumulative_dropped_counts_on_the_node(client: Client) -> None:
    # The agent's spool reports running totals since it was installed (schema: "Cumulative"),
    # so the node keeps the latest value: 120 then 300 dropped records is 300 lost, not 420.
    node, token = registered_node()
    first = batch("b-1", gpus=[gpu()], gpu_samples=[gpu_sample()])
    first["agent"] = {"version": "test", "dropped_records": 120, "dropped_batches": 2}
    assert post(client, token, first).status_code == 201
    node.refresh_from_db()
    assert (node.agent_dropped_records, node.agent_dropped_batches) == (120, 2)

    second = batch("b-2", gpus=[gpu()], gpu_samples=[gpu_sample(ts=time.time() - 30)])
    second["agent"] = {"version": "test", "dropped_records": 300, "dropped_batches": 5}
    assert post(client, token, second).status_code == 201
    node.refresh_from_db()
    assert (node.agent_dropped_records, node.agent_dropped_batches) == (300, 5)

    # A batch whose agent block leaves the counts out does not reset them.
    third = batch("b-3", gpus=[gpu()], gpu_samples=[gpu_sample(ts=time.time() - 20)])
    assert post(client, token, third).status_code == 201
    node.refresh_from_db()
    assert (node.agent_dropped_records, node.agent_dropped_batches) == (300, 5)


def test_it_skips_samples_already_stored_by_another_batch(client: Client) -> None:
    _node, token = registered_node()
    ts = time.time() - 10
    assert (
        post(client, token, batch("a", gpus=[gpu()], gpu_samples=[gpu_sample(ts=ts)])).status_code
        == 201
    )
    response = post(
        client,
        token,
        batch("b", gpus=[gpu()], gpu_samples=[gpu_sample(ts=ts), gpu_sample(ts=ts + 1)]),
    )
    assert response.status_code == 201
    assert response.json()["stored"]["gpu_samples"] == 1
    assert response.json()["duplicate_rows"] == 1
    assert GpuSample.objects.count() == 2


def test_it_needs_a_known_agent_token(client: Client) -> None:
    registered_node()
    payload = batch(gpus=[gpu()], gpu_samples=[gpu_sample()])
    missing = post(client, None, payload)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    wrong = post(client, "not-the-token", payload)
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.json()["detail"]
    assert _nothing_stored()


def test_it_refuses_a_session_user_without_an_agent_token(client: Client, alice) -> None:
    client.force_login(alice)
    response = post(client, None, batch())
    assert response.status_code in (401, 403)
    assert _nothing_stored()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (batch(gpu_samples=[gpu_sample(util_pct=101)]), "gpu_samples[0].util_pct",
         "between 0 and 100"),
        (batch(gpu_samples=[gpu_sample(util_pct="high")]), "gpu_samples[0].util_pct",
         "must be a number, got str"),
        (batch(gpu_samples=[gpu_sample(ts=1.7e12)]), "gpu_samples[0].ts", "Unix seconds"),
        (batch(gpu_samples=[{"ts": time.time()}]), "gpu_samples[0].gpu_uuid", "required"),
        (batch(gpu_samples=[gpu_sample(colour="red")]), "gpu_samples[0].colour",
         "unknown field"),
        (batch(requests=[request(status="fine")]), "requests[0].status", "one of ok"),
        (batch(requests=[request(prompt_tokens=-1)]), "requests[0].prompt_tokens",
         "between 0 and 2147483647, got -1"),
        (batch(requests=[request(prompt_tokens=2.5)]), "requests[0].prompt_tokens",
         "integer"),
        (batch(engine_samples=[engine_sample(kv_cache_usage=1.5)]),
         "engine_samples[0].kv_cache_usage", "between 0 and 1"),
        (batch(engine_samples=[engine_sample(histograms={"x": {"buckets": "no"}})]),
         "engine_samples[0].histograms", "buckets"),
        (batch(gpus=[gpu(memory_bytes=True)]), "gpus[0].memory_bytes", "integer"),
        (batch(gpu_samples={"not": "a list"}), "gpu_samples", "must be a list"),
        ({"gpu_samples": []}, "batch_id", "required"),
        (batch(batch_id="has spaces"), "batch_id", "A-Z"),
        ([1, 2], "(body)", "JSON object"),
        (batch(surprise=1), "surprise", "unknown field"),
    ],
)  # fmt: skip
def test_it_names_the_bad_field_and_stores_nothing(
    client: Client, payload: object, field: str, message: str
) -> None:
    _node, token = registered_node()
    good = {"gpus": [gpu()], "gpu_samples": [gpu_sample(ts=time.time() - 5)]}
    if isinstance(payload, dict):
        payload = {**good, **payload}
    response = post(client, token, payload)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert _nothing_stored()


def test_it_reports_several_errors_at_once_and_keeps_the_batch_id_usable(
    client: Client,
) -> None:
    _node, token = registered_node()
    bad = batch(gpus=[gpu()], gpu_samples=[gpu_sample(util_pct=-1), gpu_sample(mem_used_bytes=-5)])
    errors = post(client, token, bad).json()["errors"]
    assert [e["field"] for e in errors] == [
        "gpu_samples[0].util_pct",
        "gpu_samples[1].mem_used_bytes",
    ]
    fixed = batch(gpus=[gpu()], gpu_samples=[gpu_sample()])
    assert post(client, token, fixed).status_code == 201  # same batch id, now stored


def test_it_refuses_samples_of_a_gpu_the_node_does_not_have(client: Client) -> None:
    _other, other_token = registered_node("gpu-2")
    assert post(client, other_token, batch("x", gpus=[gpu("GPU-OTHER")])).status_code == 201
    _node, token = registered_node("gpu-1")
    response = post(client, token, batch(gpu_samples=[gpu_sample("GPU-OTHER")]))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "gpu_samples[0].gpu_uuid"
    assert GpuSample.objects.count() == 0
    assert not IngestBatch.objects.filter(batch_id="b-1").exists()


def test_it_refuses_nan_and_infinity(client: Client) -> None:
    _node, token = registered_node()
    text = json.dumps(batch(gpus=[gpu()], gpu_samples=[gpu_sample()])).replace("42.5", "NaN")
    response = post(client, token, text.encode())
    assert response.status_code == 400
    assert "NaN is not a JSON number" in response.json()["errors"][0]["message"]
    assert _nothing_stored()


def test_it_refuses_bodies_that_are_not_gzip_or_json(client: Client) -> None:
    _node, token = registered_node()
    not_gzip = post(client, token, b"plain", compress=False, HTTP_CONTENT_ENCODING="gzip")
    assert not_gzip.status_code == 400
    assert "gzip" in not_gzip.json()["errors"][0]["message"]
    brotli = post(client, token, b"{}", compress=False, HTTP_CONTENT_ENCODING="br")
    assert brotli.status_code == 415
    not_json = post(client, token, b"{nope", compress=False)
    assert not_json.status_code == 400
    truncated = post(client, token, gzip.compress(b'{"batch_id": "x"}')[:-6], compress=False,
                     HTTP_CONTENT_ENCODING="gzip")  # fmt: skip
    assert truncated.status_code == 400
    assert _nothing_stored()


@override_settings(INGEST_MAX_BODY_BYTES=4096)
def test_it_refuses_bodies_over_the_limit_even_when_compressed(client: Client) -> None:
    _node, token = registered_node()
    bomb = {"batch_id": "bomb", "host": {"padding": "x" * 100_000}}
    response = post(client, token, bomb)  # ~100 KB decoded from a few hundred bytes of gzip
    assert response.status_code == 413
    assert "limit" in response.json()["errors"][0]["message"]
    plain = post(client, token, json.dumps(bomb).encode(), compress=False)
    assert plain.status_code == 413
    assert _nothing_stored()


def test_it_accepts_an_uncompressed_batch(client: Client) -> None:
    node, token = registered_node()
    response = post(client, token, batch(gpus=[gpu()], gpu_samples=[gpu_sample()]), compress=False)
    assert response.status_code == 201
    assert Node.objects.get(pk=node.pk).gpus.count() == 1


def test_it_moves_a_gpu_to_the_node_that_now_reports_it(client: Client) -> None:
    _old, old_token = registered_node("old-name")
    assert post(client, old_token, batch("a", gpus=[gpu()])).status_code == 201
    new, new_token = registered_node("new-name")
    response = post(client, new_token, batch("a", gpus=[gpu()], gpu_samples=[gpu_sample()]))
    assert response.status_code == 201
    assert Gpu.objects.get(uuid="GPU-0").node == new


def test_it_answers_a_batch_id_resent_with_other_rows_as_a_conflict(client: Client) -> None:
    _node, token = registered_node()
    first = batch("b-1", gpus=[gpu()], gpu_samples=[gpu_sample(ts=time.time() - 60)])
    assert post(client, token, first).status_code == 201
    # A retry re-stamping only its metadata is the same batch
    retry = {**first, "sent_at": time.time(), "agent": {"version": "test", "dropped_records": 3}}
    assert post(client, token, retry).status_code == 200
    other = batch("b-1", gpus=[gpu()], gpu_samples=[gpu_sample(ts=time.time() - 30)])
    response = post(client, token, other)
    assert response.status_code == 409
    assert response.json() == {
        "errors": [
            {
                "field": "batch_id",
                "message": "batch id 'b-1' was stored before with other rows; a batch id "
                "names one batch: send new rows under a new id",
            }
        ]
    }
    assert GpuSample.objects.count() == 1


NUL_CASES = [
    ({"gpus": [gpu(name="H100\x00")]}, "gpus[0].name"),
    ({"deployments": [{"served_name": "ll\x00ama"}]}, "deployments[0].served_name"),
    (
        {"gpus": [gpu()], "deployments": [{"served_name": "llama", "gpu_uuids": ["GPU-0\x00"]}]},
        "deployments[0].gpu_uuids",
    ),
    ({"engine_samples": [engine_sample(instance="h:1\x00")]}, "engine_samples[0].instance"),
    ({"requests": {"served_name": ["x\x00"], "arrival_ts": [time.time() - 60],
                   "prompt_tokens": [1], "output_tokens": [1]}}, "requests.served_name[0]"),
    ({"gpus": [gpu()], "gpu_samples": {"gpu_uuid": ["GPU-0\x00"], "ts": [time.time() - 60],
                                       "util_pct": [1.0], "mem_used_bytes": [1]}},
     "gpu_samples.gpu_uuid[0]"),
    ({"engine_samples": [engine_sample(histograms={"h\x00": {"buckets": [["+Inf", 1]],
                                                             "sum": 1, "count": 1}})]},
     "engine_samples[0].histograms"),
    ({"host": {"os": "Linux\x00"}}, "host.os"),
    ({"host": {"drivers": [{"n\x00": 1}]}}, "host.drivers[0].n?"),
]  # fmt: skip


@pytest.mark.parametrize(("lists", "field"), NUL_CASES)
def test_it_refuses_nul_characters_naming_the_field(
    client: Client, lists: dict[str, object], field: str
) -> None:
    # PostgreSQL's text and jsonb cannot hold U+0000: such a batch was a 500 after the insert
    node, token = registered_node()
    response = post(client, token, batch("b-nul", **lists))
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert "NUL" in errors[0]["message"]
    assert _nothing_stored()
    node.refresh_from_db()
    assert node.host_info == {}


def test_it_refuses_host_json_nested_too_deep_before_storing_anything(client: Client) -> None:
    # The standard library's encoder cannot write this (recursion), so the JSON is built as text
    node, token = registered_node()
    rows = json.dumps(batch(gpus=[gpu()], gpu_samples=[gpu_sample()]))[:-1]
    body = (rows + ', "host": ' + '{"k": ' * 1000 + '{"leaf": 1}' + "}" * 1001).encode()
    response = post(client, token, body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error == {
        "field": "host.k.k.k.k.k.k.k.k",
        "message": "is nested more than 8 levels deep",
    }
    assert _nothing_stored()
    node.refresh_from_db()
    assert node.host_info == {}


def test_it_keeps_the_agents_dead_letter_count_and_reason_on_the_node(client: Client) -> None:
    node, token = registered_node()
    payload = batch(gpus=[gpu()])
    payload["agent"] = {"version": "test", "dead_letter_batches": 2,
                        "dead_letter_last_error": "400 gpus[0].name: must be ..."}  # fmt: skip
    assert post(client, token, payload).status_code == 201
    node.refresh_from_db()
    assert (node.agent_dead_letter_batches, node.agent_dead_letter_last_error) == (
        2, "400 gpus[0].name: must be ...",
    )  # fmt: skip


def test_it_refuses_a_gpu_index_its_column_cannot_hold(client: Client) -> None:
    # Gpu.index is a smallint: 64198 passed validation and failed the insert (a 500)
    _node, token = registered_node()
    response = post(client, token, batch(gpus=[gpu(index=32768)]))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "gpus[0].index", "message": "must be between 0 and 32767, got 32768"}
    ]
    assert post(client, token, batch("b-2", gpus=[gpu(index=32767)])).status_code == 201
