"""Benchmark pages: start a job against a registered endpoint (fake OpenAI server), its runs
with the engine's prediction and error, comparing runs, roles, errors naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRun, JobStatus
from probes.models import Cluster, Gpu, ModelDeployment, Node
from tests.advisor.benchmarking.fake_openai import FakeServer, fake_server_thread

# A closed-loop run the fake server answers in well under a second.
FORM = {
    "kind": "run", "workload_kind": "concurrency", "num_requests": "12", "concurrency": "4",
    "prompt_tokens": "32", "output_tokens": "8", "burstiness": "1.0", "warmup_requests": "0",
}  # fmt: skip


@pytest.fixture
def served() -> Iterator[tuple[str, FakeServer]]:
    with fake_server_thread() as pair:
        yield pair


def endpoint_create(base_url: str) -> BenchmarkEndpoint:
    """A registered endpoint the engine can predict for (H100, Llama-3-8B)."""
    cluster, _ = Cluster.objects.get_or_create(name="bench")
    node, _ = Node.objects.get_or_create(cluster=cluster, hostname="bench-node")
    Gpu.objects.get_or_create(
        node=node, uuid="GPU-bench-0",
        defaults={"index": 0, "model_name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 2**30},
    )  # fmt: skip
    deployment, _ = ModelDeployment.objects.get_or_create(
        cluster=cluster, served_name="fake-model", defaults={"model_id": "fake/model"}
    )
    return BenchmarkEndpoint.objects.create(
        node=node, deployment=deployment, base_url=base_url, hardware="H100-SXM",
        model_ref="Llama-3-8B", max_concurrency=16, max_duration_s=60, max_requests=500,
    )  # fmt: skip


@pytest.fixture
def endpoint(transactional_db: Any, served: tuple[str, FakeServer]) -> BenchmarkEndpoint:
    return endpoint_create(served[0])


def test_an_operator_starts_a_benchmark_and_sees_predicted_vs_measured(
    client: Client, bob, endpoint: BenchmarkEndpoint
) -> None:
    client.force_login(bob)
    response = client.post("/benchmarks/", {**FORM, "endpoint": endpoint.pk})
    job = BenchmarkJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/benchmarks/{job.pk}/"
    assert job.status == JobStatus.COMPLETED, job.error  # in-process in tests
    assert job.created_by == bob
    run = BenchmarkRun.objects.get(job=job)
    assert run.summary["completed"] == 12
    error = run.prediction_error["output_throughput"]
    assert error["error"] == pytest.approx(error["predicted"] / error["measured"] - 1)

    html = client.get(response["Location"]).content.decode()
    assert "<td>run</td>" in html or run.label in html
    kpi = html.split('data-testid="kpi-prediction-error"')[1].split("</div>")[0]
    assert f"{run.prediction_error['median_abs_error'] * 100:.1f}%" in kpi
    parity = html.split('<script type="application/json" id="fig-parity">')[1]
    figure = json.loads(parity.split("</script>")[0])
    throughput = next(t for t in figure["data"] if t["name"].startswith("output tokens/s"))
    assert throughput["x"] == [pytest.approx(error["measured"])]
    assert throughput["y"] == [pytest.approx(error["predicted"])]
    assert "predicted with" in html


def test_form_errors_name_the_field_and_start_nothing(
    client: Client, bob, endpoint: BenchmarkEndpoint
) -> None:
    client.force_login(bob)
    cases = [
        ({"workload_kind": "poisson", "concurrency": ""}, "rate_rps", "workload.rate_rps"),
        ({"kind": "sweep", "sweep_over": "concurrency", "sweep_values": "1, x"},
         "sweep_values", "sweep.values[1]: not a number"),
        ({"num_requests": "100000"}, "num_requests", "workload.num_requests: exceeds"),
        ({"kind": "ab", "ab_baseline_args": "{nope"}, "ab_baseline_args", "ab"),
        ({"concurrency": "-2"}, "concurrency", "concurrency: Ensure this value"),
    ]  # fmt: skip
    for changes, field, text in cases:
        response = client.post("/benchmarks/", {**FORM, "endpoint": endpoint.pk, **changes})
        html = response.content.decode()
        assert response.status_code == 400, changes
        on_field = html.split(f'data-testid="error-{field}">')[1].split("</span>")[0]
        assert text in on_field, (changes, on_field)
    assert not BenchmarkJob.objects.exists()


def test_viewers_read_but_start_nothing(client: Client, carol, endpoint: BenchmarkEndpoint) -> None:
    client.force_login(carol)
    html = client.get("/benchmarks/").content.decode()
    assert "bench-node" in html
    assert 'data-testid="start-benchmark"' not in html
    assert client.post("/benchmarks/", {**FORM, "endpoint": endpoint.pk}).status_code == 403
    assert not BenchmarkJob.objects.exists()


def test_runs_of_two_jobs_compare_side_by_side(
    client: Client, bob, endpoint: BenchmarkEndpoint
) -> None:
    client.force_login(bob)
    client.post("/benchmarks/", {**FORM, "endpoint": endpoint.pk})
    client.post("/benchmarks/", {**FORM, "endpoint": endpoint.pk, "concurrency": "1"})
    runs = list(BenchmarkRun.objects.order_by("id"))
    assert len(runs) == 2

    response = client.get(f"/benchmarks/compare/?run={runs[0].pk}&run={runs[1].pk}&run=x")
    html = response.content.decode()
    table = html.split('data-testid="compare-table"')[1].split("</table>")[0]
    for run in runs:
        assert f"#{run.job_id}/{run.sequence}" in table
        assert f"{run.summary['output_throughput']:,.1f} /" in table
    assert "run: not a run id: &#x27;x&#x27;" in html


def test_a_job_page_polls_while_it_runs_and_cancels_for_operators(
    client: Client, bob, carol, endpoint: BenchmarkEndpoint
) -> None:
    job = BenchmarkJob.objects.create(
        endpoint=endpoint, kind="run", spec={"workload": {"kind": "concurrency"}},
        max_concurrency=4, max_duration_s=60, status=JobStatus.QUEUED,
    )  # fmt: skip
    client.force_login(carol)
    html = client.get(f"/benchmarks/{job.pk}/").content.decode()
    assert f'data-progress-url="/benchmarks/{job.pk}/progress.json"' in html
    assert 'data-testid="job-actions"' not in html
    assert client.get(f"/benchmarks/{job.pk}/progress.json").json()["done"] is False
    assert client.post(f"/benchmarks/{job.pk}/", {"action": "cancel"}).status_code == 403

    client.force_login(bob)
    assert client.post(f"/benchmarks/{job.pk}/", {"action": "cancel"}).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.get(f"/benchmarks/{job.pk}/progress.json").json()["done"] is True
