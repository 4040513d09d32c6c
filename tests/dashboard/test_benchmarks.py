"""Benchmark pages: start a job against a registered endpoint (fake OpenAI server), its runs
with the engine's prediction and error, comparing runs, roles, errors naming the field, and
an A/B job's card (measured and predicted ratios) from a stored result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from advisor.benchmarking.checkpoints import QUALITY_NOT_MEASURED
from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRun, JobStatus
from dashboard.selectors.benchmarks import AbQuality, AbRatio, ab_view
from dashboard.selectors.config_diff import ArgLine
from probes.models import Cluster, Gpu, ModelDeployment, Node
from tests.advisor.benchmarking.fake_openai import FakeServer, fake_server_thread

TIMES, DASH = "\u00d7", "\u2013"  # how the A/B card prints a ratio and a missing value
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


def test_the_ab_checkpoint_fields_show_their_errors(
    client: Client, bob, endpoint: BenchmarkEndpoint
) -> None:
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(
        local_launch={"python": "/no/python", "model": "fake/model", "port": 9}
    )
    client.force_login(bob)
    cases = [
        ({"ab_candidate_model": "-x"}, "ab_candidate_model",
         "ab.candidate_model: must not start with &#x27;-&#x27; (vLLM would read a flag)"),
        ({"ab_candidate_quant": "int3"}, "ab_candidate_quant",
         "ab.candidate_quant: unknown &#x27;int3&#x27;; known: bf16"),
    ]  # fmt: skip
    for changes, field, text in cases:
        data = {**FORM, "endpoint": endpoint.pk, "kind": "ab", **changes}
        response = client.post("/benchmarks/", data)
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


def ab_job_stored(endpoint: BenchmarkEndpoint | None = None) -> BenchmarkJob:
    """A completed continuous-batching A/B as `_ab_job` stores it (no server needed)."""
    endpoint = endpoint or endpoint_create("http://127.0.0.1:9")
    ab = {"label": "continuous batching", "baseline_args": {"max_num_seqs": 1},
          "candidate_args": {"max_num_seqs": 64, "enable_chunked_prefill": True}}  # fmt: skip
    job = BenchmarkJob.objects.create(
        endpoint=endpoint, kind="ab", spec={"workload": {"kind": "concurrency"}, "ab": ab},
        max_concurrency=64, max_duration_s=600, status=JobStatus.COMPLETED,
    )  # fmt: skip
    runs = {}
    for sequence, (side, summary) in enumerate((
        ("baseline", {"output_throughput": 50.0, "median_ttft_ms": 40.0, "median_tpot_ms": 20.0}),
        ("candidate", {"output_throughput": 160.0, "median_ttft_ms": 120.0,
                       "median_tpot_ms": 25.0}),
    ), start=1):  # fmt: skip
        runs[side] = BenchmarkRun.objects.create(
            job=job, sequence=sequence, label=side, status="completed", started_at=timezone.now(),
            duration_s=10.0, workload={}, summary=summary, engine_args=ab[f"{side}_args"],
            server_metrics={"mean_tokens_per_step": 1.5 if side == "baseline" else 31.67},
        )  # fmt: skip
    job.result = {"ab": {
        "label": "continuous batching",
        "baseline_run_id": runs["baseline"].id, "candidate_run_id": runs["candidate"].id,
        "measured": {"output_throughput_ratio": 3.2, "median_ttft_ms_ratio": 3.0,
                     "median_tpot_ms_ratio": 1.25, "p99_e2el_ms_ratio": 0.5},
        "predicted": {
            "unmodelled": ["enable_chunked_prefill"],
            "output_throughput_ratio": {"predicted": 4.0, "measured": 3.2, "error": 0.25},
            "median_ttft_ms_ratio": {"predicted": 2.4, "measured": 3.0, "error": -0.2},
            "median_tpot_ms_ratio": {"predicted": 1.0, "measured": 1.25, "error": -0.2},
            "p99_e2el_ms_ratio": {"predicted": None, "measured": 0.5, "error": None},
        },
        "switched_by": "local restart",
    }}  # fmt: skip
    job.save(update_fields=["result"])
    return job


@pytest.mark.django_db
def test_an_ab_job_shows_measured_and_predicted_ratios(client: Client, carol) -> None:
    job = ab_job_stored()
    view = ab_view(job)
    assert view is not None
    assert view.label == "continuous batching"
    baseline, candidate = view.sides
    assert (baseline.name, baseline.args_text, baseline.output_throughput,
            baseline.median_ttft_ms, baseline.median_tpot_ms, baseline.tokens_per_step) == (
        "baseline", "--max-num-seqs 1", 50.0, 40.0, 20.0, 1.5,
    )  # fmt: skip
    assert (candidate.args_text, candidate.output_throughput, candidate.median_ttft_ms,
            candidate.median_tpot_ms, candidate.tokens_per_step) == (
        "--enable-chunked-prefill (on) --max-num-seqs 64", 160.0, 120.0, 25.0, 31.67,
    )  # fmt: skip
    assert view.ratios == (
        AbRatio("output_throughput", "output tokens/s", 3.2, 4.0, 0.25),
        AbRatio("median_ttft_ms", "TTFT p50", 3.0, 2.4, -0.2),
        AbRatio("median_tpot_ms", "TPOT p50", 1.25, 1.0, -0.2),
        AbRatio("p99_e2el_ms", "E2E p99", 0.5, None, None),
    )
    assert view.args == (
        ArgLine("--enable-chunked-prefill", None, "(on)", "added"),
        ArgLine("--max-num-seqs", "1", "64", "changed"),
    )
    assert view.prediction_note == "not modelled by the engine: enable_chunked_prefill"

    client.force_login(carol)
    html = client.get(f"/benchmarks/{job.pk}/").content.decode()
    card = html.split('data-testid="ab"')[1].split("</section>")[0]
    sides = card.split('data-testid="ab-sides"')[1].split("</table>")[0]
    assert (
        '<tr data-side="candidate"><td>candidate</td><td class="wrap"><code>'
        "--enable-chunked-prefill (on) --max-num-seqs 64</code></td>"
    ) in sides
    assert (
        '<td class="num">160.0</td><td class="num">120.0 ms</td><td class="num">25.00 ms</td>'
        '<td class="num">31.7</td></tr>'
    ) in sides
    assert '<td class="num">20.00 ms</td><td class="num">1.5</td></tr>' in sides
    assert '<td class="num">50.0</td><td class="num">40.0 ms</td>' in sides
    ratios = card.split('data-testid="ab-ratios"')[1].split("</table>")[0]
    assert (
        '<tr data-ratio="output_throughput"><td>output tokens/s</td>'
        f'<td class="num">{TIMES}3.20</td><td class="num">{TIMES}4.00</td>'
        '<td class="num">25.0%</td></tr>'
    ) in ratios
    assert f'<td class="num">{TIMES}2.40</td><td class="num">-20.0%</td>' in ratios
    assert (
        f'<tr data-ratio="p99_e2el_ms"><td>E2E p99</td><td class="num">{TIMES}0.50</td>'
        f'<td class="num">{DASH}</td><td class="num">{DASH}</td></tr>'
    ) in ratios
    assert "not modelled by the engine: enable_chunked_prefill" in card
    assert '<span class="add">+ --max-num-seqs 64</span>' in card


@pytest.mark.django_db
def test_an_ab_of_two_checkpoints_shows_each_and_says_quality_is_not_measured(
    client: Client, carol
) -> None:
    job = ab_job_stored()
    awq = "/models/llama-AWQ"
    job.result["ab"]["quality"] = {
        "measured": False,
        "note": QUALITY_NOT_MEASURED,
        "baseline": {"model": None, "precision": "bf16",
                     "precision_from": "the endpoint's precision", "delta_points": 0.0,
                     "source": "reference precision", "kind": "reference"},
        "candidate": {"model": awq, "precision": "awq-int4",
                      "precision_from": "the checkpoint's config.json", "delta_points": -1.8,
                      "source": "Qwen docs (AWQ 80.5 vs 82.3)", "kind": "published"},
    }  # fmt: skip
    job.save(update_fields=["result"])
    BenchmarkRun.objects.filter(job=job, label="candidate").update(
        config={"served_model": {"id": "m", "root": awq}, "model": awq}
    )
    view = ab_view(job)
    assert view is not None
    assert view.quality_note == QUALITY_NOT_MEASURED
    assert view.quality == (
        AbQuality("baseline", "the endpoint's", "", "bf16", "the endpoint's precision", 0.0,
                  "reference precision", "reference"),
        AbQuality("candidate", awq, awq, "awq-int4", "the checkpoint's config.json", -1.8,
                  "Qwen docs (AWQ 80.5 vs 82.3)", "published"),
    )  # fmt: skip

    client.force_login(carol)
    html = client.get(f"/benchmarks/{job.pk}/").content.decode()
    assert (
        '<p class="notice" data-testid="ab-quality-note">Quality is not measured by a speed '
        "benchmark: this A/B measured throughput and latency only."
    ) in html
    table = html.split('data-testid="ab-quality"')[1].split("</table>")[0]
    assert (
        f'<tr data-side="candidate"><td>candidate</td><td class="wrap"><code>{awq}</code></td>'
        f'<td class="wrap"><code>{awq}</code></td>'
    ) in table
    assert (
        '<td class="num">-1.8 points</td><td class="wrap"><strong>published</strong>: '
        "Qwen docs (AWQ 80.5 vs 82.3)</td>"
    ) in table
    assert "<strong>reference</strong>: reference precision" in table


@pytest.mark.django_db
def test_an_ab_stored_before_checkpoints_has_no_quality_table(client: Client, carol) -> None:
    job = ab_job_stored()
    view = ab_view(job)
    assert view is not None
    assert (view.quality_note, view.quality) == ("", ())
    client.force_login(carol)
    assert 'data-testid="ab-quality"' not in client.get(f"/benchmarks/{job.pk}/").content.decode()


@pytest.mark.django_db
def test_a_job_that_is_not_an_ab_has_no_ab_card(client: Client, carol) -> None:
    job = ab_job_stored()
    job.kind = "run"
    job.save(update_fields=["kind"])
    assert ab_view(job) is None
    client.force_login(carol)
    assert 'data-testid="ab"' not in client.get(f"/benchmarks/{job.pk}/").content.decode()


@pytest.mark.django_db
def test_an_ab_without_a_prediction_says_why(client: Client, carol) -> None:
    job = ab_job_stored()
    job.result["ab"]["predicted"] = {"error": "endpoint has no hardware"}
    job.save(update_fields=["result"])
    view = ab_view(job)
    assert view is not None
    assert [(r.measured, r.predicted, r.error) for r in view.ratios] == [
        (3.2, None, None), (3.0, None, None), (1.25, None, None), (0.5, None, None),
    ]  # fmt: skip
    assert view.prediction_note == "no prediction: endpoint has no hardware"
