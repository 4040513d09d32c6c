"""The benchmark API: roles, validation errors naming the field, exports, cancel."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRun

WORKLOAD = {"kind": "concurrency", "num_requests": 6, "concurrency": 2, "prompt_tokens": 8,
            "output_tokens": 5}  # fmt: skip


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _start(client: Client, endpoint: BenchmarkEndpoint, **body: Any) -> Any:
    payload = {"endpoint": endpoint.id, "kind": "run", "workload": WORKLOAD, **body}
    return client.post("/api/v1/benchmarks/", json.dumps(payload), content_type="application/json")


def test_it_lets_an_operator_start_a_job(endpoint: BenchmarkEndpoint, bob: User) -> None:
    response = _start(_client(bob), endpoint)

    assert response.status_code == 201, response.content
    job = BenchmarkJob.objects.get()
    assert response.json()["id"] == job.id
    assert job.created_by == bob
    assert job.status == "completed"  # eager in tests


def test_it_refuses_a_viewer_and_strangers(endpoint: BenchmarkEndpoint, carol: User) -> None:
    assert _start(_client(carol), endpoint).status_code == 403
    assert _start(Client(), endpoint).status_code == 403
    assert not BenchmarkJob.objects.exists()
    assert _client(carol).get("/api/v1/benchmarks/").status_code == 200


def test_it_names_the_bad_field(endpoint: BenchmarkEndpoint, bob: User) -> None:
    client = _client(bob)
    bad_rate = _start(client, endpoint, workload={"kind": "poisson", "rate_rps": 0})
    free_url = _start(client, endpoint, base_url="http://evil.example:8000")

    assert bad_rate.status_code == 400
    assert bad_rate.json()["errors"][0]["field"] == "workload.rate_rps"
    assert free_url.status_code == 400  # targets are registered endpoints, never URLs
    assert free_url.json()["errors"][0]["field"] == "base_url"
    assert not BenchmarkJob.objects.exists()


def test_it_exports_json_and_csv(endpoint: BenchmarkEndpoint, bob: User, carol: User) -> None:
    job_id = _start(_client(bob), endpoint).json()["id"]
    viewer = _client(carol)
    run = BenchmarkRun.objects.get(job_id=job_id)

    detail = viewer.get(f"/api/v1/benchmarks/{job_id}/").json()
    assert detail["runs"][0]["summary"]["completed"] == 6
    everything = json.loads(viewer.get(f"/api/v1/benchmarks/{job_id}/export/").content)
    assert len(everything["runs"][0]["requests"]) == 6
    assert everything["runs"][0]["requests"][0]["itl_s"]
    per_run = viewer.get(f"/api/v1/benchmarks/{job_id}/export/?as=csv")
    rows = list(csv.DictReader(io.StringIO(per_run.content.decode())))
    assert [row["run_id"] for row in rows] == [str(run.id)]
    assert float(rows[0]["output_throughput"]) > 0
    requests = viewer.get(f"/api/v1/benchmarks/{job_id}/runs/{run.id}/requests.csv")
    body = b"".join(requests.streaming_content)  # type: ignore[attr-defined]
    lines = list(csv.DictReader(io.StringIO(body.decode())))
    assert [line["index"] for line in lines] == [str(i) for i in range(6)]
    assert viewer.get(f"/api/v1/benchmarks/{job_id}/export/?as=xml").status_code == 400


def test_it_refuses_to_cancel_a_finished_job(endpoint: BenchmarkEndpoint, bob: User) -> None:
    client = _client(bob)
    job_id = _start(client, endpoint).json()["id"]

    response = client.post(f"/api/v1/benchmarks/{job_id}/cancel/")
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "status"
    assert client.post("/api/v1/benchmarks/999999/cancel/").status_code == 404


def test_it_lists_only_registered_endpoints(endpoint: BenchmarkEndpoint, carol: User) -> None:
    listed = _client(carol).get("/api/v1/benchmark-endpoints/").json()

    assert [item["id"] for item in listed] == [endpoint.id]
    assert listed[0]["ab"] is False
