"""Node, GPU and deployment pages: GPU telemetry series and vLLM engine metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils.http import urlencode

from dashboard.formatting import usd
from dashboard.selectors.engine import engine_series
from dashboard.selectors.gpus import gpu_series
from dashboard.windows import Window
from probes.agent.vllm_metrics import Histogram
from probes.models import EngineRollup, GpuSample, Node
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
