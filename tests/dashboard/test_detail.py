"""Node, GPU and deployment pages: GPU telemetry series and vLLM engine metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.http import urlencode

from dashboard.figures import engine as engine_figures
from dashboard.formatting import usd
from dashboard.selectors.engine import engine_series
from dashboard.selectors.gpus import LastSeen, gpu_series, node_last_seen
from dashboard.windows import Window
from probes.agent.vllm_metrics import Histogram
from probes.models import EngineRollup, GpuSample, IngestBatch, Node
from tests.dashboard.assessed import assessment_completed
from tests.dashboard.conftest import END, SmallFleet
from tests.dashboard.test_assessments import cost_energy_rows

pytestmark = pytest.mark.django_db
INF = float("inf")


def ttft(counts: tuple[float, float, float]) -> dict[str, object]:
    """A TTFT histogram window: counts in (0, 0.1], (0.1, 1], (1, inf)."""
    a, b, c = counts
    return Histogram(((0.1, a), (1.0, a + b), (INF, a + b + c)), 0.0, a + b + c).to_json()


def test_gpu_series_use_raw_samples_for_short_windows_with_dcgm_fields(
    small_fleet: SmallFleet,
) -> None:
    gpu = small_fleet.busy
    for minute in range(30):
        GpuSample.objects.create(
            gpu=gpu, ts=END - timedelta(minutes=30 - minute), util_pct=float(minute),
            mem_used_bytes=2**30 * minute, power_w=100.0 + minute, sm_active=0.5,
        )  # fmt: skip
    window = Window("1h", END - timedelta(hours=1), END, end_given=True)
    [series] = gpu_series(gpus=[gpu], window=window)
    assert series.resolution is None
    assert series.mean("util_mean_pct") == pytest.approx(14.5)
    assert series.peak("mem_max_bytes") == 29 * 2**30
    assert series.mean("sm_active") == pytest.approx(0.5)
    assert series.get("tensor_active") is None  # not reported: no line, not zeros


def test_gpu_series_use_hour_rollups_for_a_week(small_fleet: SmallFleet) -> None:
    window = Window("7d", END - timedelta(days=7), END, end_given=True)
    busy, idle = gpu_series(gpus=[small_fleet.busy, small_fleet.idle], window=window)
    assert busy.resolution == "1h"
    assert busy.epoch_s.size == 24
    assert busy.mean("util_mean_pct") == pytest.approx(60.0)
    assert idle.peak("util_max_pct") == pytest.approx(70.0)
    assert busy.get("sm_active") is None  # the fixture's rollups carry no SM activity


def test_node_and_gpu_pages_render_their_charts(client: Client, carol, small_fleet) -> None:
    client.force_login(carol)
    query = urlencode({"window": "7d", "end": END.isoformat()})
    node = client.get(f"/nodes/{small_fleet.node.pk}/?{query}")
    assert node.status_code == 200
    text = node.content.decode()
    for chart in ("fig-util", "fig-memory", "fig-power", "fig-sm"):
        assert f'id="{chart}"' in text
    assert "From 1-hour rollups." in text
    assert "SM activity not reported" in text
    gpu = client.get(f"/gpus/{small_fleet.busy.pk}/?{query}")
    assert gpu.status_code == 200
    assert "60.0%" in gpu.content.decode()
    assert client.get("/gpus/999999/").status_code == 404


def test_the_node_page_flags_records_the_agent_dropped(client: Client, carol, small_fleet) -> None:
    # An SRE must see that the agent's spool overflowed and telemetry was lost.
    client.force_login(carol)
    kpi = (
        '<div class="kpi{}"><span class="label">Dropped by agent</span>'
        '<span class="value">{}</span>'
    )
    page = client.get(f"/nodes/{small_fleet.node.pk}/").content.decode()
    assert kpi.format("", 0) in page
    Node.objects.filter(pk=small_fleet.node.pk).update(
        agent_dropped_records=1234, agent_dropped_batches=3
    )
    page = client.get(f"/nodes/{small_fleet.node.pk}/").content.decode()
    assert kpi.format(" bad", 1234) in page


def test_the_node_page_shows_requests_recorded_without_prefix_hashes(
    client: Client, carol, small_fleet
) -> None:
    # Prefix reuse is measured on fewer requests when the proxy's hash queue overflowed.
    client.force_login(carol)
    kpi = (
        '<div class="kpi{}" data-testid="kpi-dropped-prefix-hashes">'
        '<span class="label">Requests without prefix hashes</span><span class="value">{}</span>'
    )
    page = client.get(f"/nodes/{small_fleet.node.pk}/").content.decode()
    assert kpi.format("", 0) in page
    Node.objects.filter(pk=small_fleet.node.pk).update(agent_dropped_prefix_hashes=417)
    page = client.get(f"/nodes/{small_fleet.node.pk}/").content.decode()
    assert kpi.format(" bad", 417) in page


def test_the_deployment_page_shows_vllm_load_and_window_latency(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    deployment = small_fleet.deployment
    start = END - timedelta(hours=2)
    for minute, counts in ((0, (8.0, 2.0, 0.0)), (1, (0.0, 0.0, 10.0))):
        EngineRollup.objects.create(
            deployment=deployment, resolution="1m", bucket_start=start + timedelta(minutes=minute),
            sample_count=4, running_mean=3.0 + minute, running_max=5.0, waiting_mean=1.0,
            waiting_max=4.0, kv_cache_usage_mean=0.25, kv_cache_usage_max=0.5,
            requests=60.0, prompt_tokens=6000.0, generation_tokens=1200.0, preemptions=1.0,
            ttft_p50_s=0.05, ttft_p99_s=0.2,
            histograms={"time_to_first_token_seconds": ttft(counts)},
        )  # fmt: skip
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    series = engine_series(deployment=deployment, window=window)
    assert series.resolution == "1m"
    assert series.total("requests") == 120.0
    assert series.rate_per_s("requests").tolist() == [1.0, 1.0]
    # The window's histogram is the sum of both buckets: 8 + 2 + 10 observations, so the
    # median falls in (0.1, 1] and p99 in (1, inf) -> the highest finite bound.
    assert series.latency["TTFT"][0.5] == pytest.approx(0.1 + 0.9 * (10 - 8) / 2)
    assert series.latency["TTFT"][0.99] == pytest.approx(1.0)

    client.force_login(carol)
    response = client.get(
        f"/deployments/{deployment.pk}/?" + urlencode({"window": "6h", "end": END.isoformat()})
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert "1.00 s" in text  # TTFT p99 over the window
    assert 'id="fig-queue"' in text
    assert 'id="fig-latency"' in text


def test_the_deployment_page_shows_cost_and_energy_from_the_latest_plan(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    client.force_login(carol)
    page = f"/deployments/{small_fleet.deployment.pk}/"
    assert 'data-testid="deployment-plan"' not in client.get(page).content.decode()

    assessment_completed(cluster=small_fleet.cluster, end=END - timedelta(days=7))
    latest = assessment_completed(cluster=small_fleet.cluster, end=END)
    html = client.get(page).content.decode()

    card = html.split('data-testid="deployment-plan"')[1].split("</section>")[0]
    assert f'href="/assessments/{latest.pk}/"' in card
    llama = next(p for p in latest.plan["deployments"] if p["deployment"] == "llama")
    today, after = llama["baseline"], llama["plan"]
    assert cost_energy_rows(card) == {
        "llama": [
            usd(today["usd_per_month"]), usd(after["usd_per_month"]),
            f"{today['energy_kwh_per_month']:,.0f}", f"{after['energy_kwh_per_month']:,.0f}",
            f"{today['energy_j_per_output_token']:,.2f}",
            f"{after['energy_j_per_output_token']:,.2f}",
        ]
    }  # fmt: skip


def test_the_node_page_says_when_its_newest_sample_came_not_never(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    """Telemetry stored without an agent report (the demo's, an import) still counts."""
    node = small_fleet.node
    assert node.last_seen is None
    GpuSample.objects.create(
        gpu=small_fleet.busy, ts=timezone.now() - timedelta(minutes=2), util_pct=50.0,
        mem_used_bytes=2**30, power_w=100.0,
    )  # fmt: skip
    client.force_login(carol)
    text = client.get(f"/nodes/{node.pk}/").content.decode()
    kpi = text.split('data-testid="kpi-last-seen"')[1].split("</div>")[0]
    assert "2\xa0minutes ago" in kpi
    assert "never" not in kpi
    by = '<span class="sub" data-testid="last-seen-by">GPU sample · agent \u2013</span>'
    assert by in kpi


def test_a_node_with_nothing_from_it_was_never_seen(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    assert node_last_seen(node=small_fleet.node, latest={}) is None
    client.force_login(carol)
    text = client.get(f"/nodes/{small_fleet.node.pk}/").content.decode()
    assert "never" in text.split('data-testid="kpi-last-seen"')[1].split("</div>")[0]


def test_the_node_takes_the_newest_of_its_report_samples_and_batches(
    small_fleet: SmallFleet,
) -> None:
    node = small_fleet.node
    now = timezone.now()
    node.last_seen = now - timedelta(hours=1)
    node.save(update_fields=["last_seen"])
    sample = GpuSample.objects.create(
        gpu=small_fleet.busy, ts=now - timedelta(minutes=5), util_pct=1.0, mem_used_bytes=1,
        power_w=1.0,
    )  # fmt: skip
    IngestBatch.objects.create(node=node, batch_id="b1", received_at=now - timedelta(minutes=1))
    seen = node_last_seen(node=node, latest={small_fleet.busy.pk: sample})
    assert seen == LastSeen(now - timedelta(minutes=1), "ingest batch")


def test_the_latency_table_falls_back_to_bucket_percentiles_without_histograms(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    """The demo's (and a Prometheus source's) rollups carry percentiles but no histograms."""
    deployment = small_fleet.deployment
    start = END - timedelta(hours=2)
    for minute, (requests, p50, p99) in enumerate(((30.0, 0.1, 0.4), (10.0, 0.2, 0.8))):
        EngineRollup.objects.create(
            deployment=deployment, resolution="1m", bucket_start=start + timedelta(minutes=minute),
            sample_count=4, running_mean=1.0, running_max=1.0, waiting_mean=0.0, waiting_max=0.0,
            requests=requests, prompt_tokens=100.0, generation_tokens=100.0, preemptions=0.0,
            ttft_p50_s=p50, ttft_p99_s=p99, histograms={},
        )  # fmt: skip
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    series = engine_series(deployment=deployment, window=window)
    assert series.latency_basis == "bucket percentiles"
    # weighted by requests: (30 * 0.1 + 10 * 0.2) / 40 and (30 * 0.4 + 10 * 0.8) / 40
    assert series.latency == {"TTFT": {0.5: pytest.approx(0.125), 0.9: None,
                                       0.99: pytest.approx(0.5)}}  # fmt: skip

    client.force_login(carol)
    text = client.get(
        f"/deployments/{deployment.pk}/?" + urlencode({"window": "6h", "end": END.isoformat()})
    ).content.decode()
    table = text.split('data-testid="latency"')[1].split("</table>")[0]
    assert "No latency" not in table
    assert '<td>TTFT</td><td class="num">125 ms</td>' in table
    assert "No histograms were kept for this window" in text


def test_the_latency_table_says_nothing_only_when_there_is_nothing(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    series = engine_series(deployment=small_fleet.deployment, window=window)
    assert (series.latency, series.latency_basis) == ({}, "")
    client.force_login(carol)
    text = client.get(
        f"/deployments/{small_fleet.deployment.pk}/?"
        + urlencode({"window": "6h", "end": END.isoformat()})
    ).content.decode()
    assert 'data-testid="no-latency"' in text
    assert "No latency percentiles in this window" in text  # the chart says so too


def test_the_latency_chart_labels_its_log_axis_in_full(small_fleet: SmallFleet) -> None:
    deployment = small_fleet.deployment
    EngineRollup.objects.create(
        deployment=deployment, resolution="1m", bucket_start=END - timedelta(hours=1),
        sample_count=4, running_mean=1.0, running_max=1.0, waiting_mean=0.0, waiting_max=0.0,
        requests=10.0, ttft_p50_s=0.03, ttft_p99_s=0.4, itl_p50_s=0.004, itl_p99_s=0.009,
    )  # fmt: skip
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    axis = engine_figures.latency(engine_series(deployment=deployment, window=window)).layout.yaxis
    assert axis.type == "log"
    assert list(axis.ticktext) == ["2", "5", "10", "20", "50", "100", "200", "500"]
    assert list(axis.tickvals) == [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
