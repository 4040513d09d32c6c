"""Fleet overview: the numbers from known rollups, the page, and its window selector."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client
from django.utils.html import escape
from django.utils.http import urlencode

from dashboard.glossary import definition
from dashboard.selectors import fleet
from dashboard.selectors.fleet import fleet_overview, resolution_for_fleet
from dashboard.windows import Window
from probes.models import Cluster, Gpu, GpuSample, Node, PriceSheet
from probes.services.rollups import gpu_rollups_compute
from tests.dashboard.conftest import END, H100, SmallFleet
from tests.support.bounds import store_out_of_bounds

pytestmark = pytest.mark.django_db


def week() -> Window:
    return Window("7d", END - timedelta(days=7), END, end_given=True)


def test_it_computes_utilization_idle_hours_and_cost_from_hour_rollups(
    small_fleet: SmallFleet,
) -> None:
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)
    assert overview.resolution == "1h"
    by_id = {gpu.gpu_id: gpu for gpu in overview.gpus}
    busy, idle, l4 = (
        by_id[g.pk] for g in (small_fleet.busy, small_fleet.idle, small_fleet.unpriced)
    )

    assert busy.observed_hours == pytest.approx(24.0)
    assert busy.util_mean_pct == pytest.approx(60.0)
    assert busy.idle_hours == 0.0
    assert busy.unused_hours == pytest.approx(24 * 0.4)
    assert busy.cost_usd == pytest.approx(24 * 4.0)

    # 10 hours never above 3% (< 5%: idle), 14 hours at 40% (peak 70%).
    assert idle.util_mean_pct == pytest.approx((10 * 2.0 + 14 * 40.0) / 24)
    assert idle.idle_hours == pytest.approx(10.0)
    assert idle.idle_cost_usd == pytest.approx(40.0)
    assert idle.unused_cost_usd == pytest.approx((10 * 0.98 + 14 * 0.6) * 4.0)

    # The L4 has no price sheet row: hours counted, never a dollar figure.
    assert l4.price.usd_per_gpu_hour is None
    assert l4.idle_hours == pytest.approx(24.0)
    assert l4.idle_cost_usd is None
    assert [(u.label, u.gpus, u.idle_hours) for u in overview.unpriced] == [("L4", 1, 24.0)]

    assert overview.gpu_count == 3
    assert overview.idle_gpu_hours == pytest.approx(34.0)
    assert overview.idle_cost_usd == pytest.approx(40.0)  # the L4's 24 h are not priced
    assert overview.cost_usd == pytest.approx(48 * 4.0)
    assert overview.util_mean_pct == pytest.approx((24 * 60 + 10 * 2 + 14 * 40 + 24 * 0) / 72)
    # Coverage: 72 observed GPU-hours of 3 GPUs x 168 h.
    assert overview.coverage == pytest.approx(72 / (3 * 168))


def test_a_price_row_out_of_bounds_is_no_price_never_a_negative_cost(
    small_fleet: SmallFleet,
) -> None:
    # a row stored before the check constraints existed (the admin and database refuse it now)
    store_out_of_bounds(PriceSheet.objects.get(gpu_kind="H100-SXM"), usd_per_gpu_hour=-4)
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)
    idle = next(gpu for gpu in overview.gpus if gpu.gpu_id == small_fleet.idle.pk)
    assert (idle.price.usd_per_gpu_hour, idle.idle_cost_usd) == (None, None)
    [refused] = idle.price.refused
    assert refused.text.startswith("probes.PriceSheet #")
    assert refused.text.endswith(
        " usd_per_gpu_hour=-4.0000: must be >= 0 and <= 1000 USD per GPU-hour, got -4.0000; "
        "row skipped, as if the kind had no price"
    )
    assert [(u.label, u.gpus, u.idle_hours) for u in overview.unpriced] == [
        ("H100-SXM", 2, 10.0),
        ("L4", 1, 24.0),
    ]
    assert (overview.idle_cost_usd, overview.cost_usd) == (None, None)


def test_it_takes_p95_over_gpu_buckets(small_fleet: SmallFleet) -> None:
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)
    values = sorted([60.0] * 24 + [2.0] * 10 + [40.0] * 14 + [0.0] * 24)
    rank = (len(values) - 1) * 0.95
    low = int(rank)
    expected = values[low] + (values[low + 1] - values[low]) * (rank - low)
    assert overview.util_p95_pct == pytest.approx(expected)
    by_id = {gpu.gpu_id: gpu for gpu in overview.gpus}
    assert by_id[small_fleet.idle.pk].util_p95_pct == pytest.approx(40.0)


def test_it_ranks_wastes_by_idle_cost_then_unpriced_by_hours(small_fleet: SmallFleet) -> None:
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)
    assert [gpu.label for gpu in overview.wastes] == ["gpu-a:1", "gpu-a:0", "gpu-a:2"]


def test_it_fills_the_heatmap_with_gaps_where_no_telemetry(small_fleet: SmallFleet) -> None:
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)
    heat = overview.heatmap
    assert heat.gpu_labels == ("gpu-a:0", "gpu-a:1", "gpu-a:2")
    assert heat.column_s == 3600
    assert heat.util_pct.shape == (3, 168)
    filled = ~__import__("numpy").isnan(heat.util_pct)
    assert filled.sum() == 72  # 3 GPUs x 24 hours; the other 5 days are gaps
    assert heat.util_pct[0][filled[0]].tolist() == [60.0] * 24


def test_it_reads_minute_rollups_while_the_window_holds_few_gpu_minutes() -> None:
    day = Window("24h", END - timedelta(days=1), END, end_given=True)
    assert resolution_for_fleet(day, 30) == "1m"  # 43,200 GPU-minutes
    assert resolution_for_fleet(day, 100) == "1h"  # 144,000
    assert resolution_for_fleet(Window("6h", END - timedelta(hours=6), END), 100) == "1m"


def test_idle_time_is_the_same_read_from_minute_or_hour_rollups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16, item 7: a 24 h window (minutes) said 67 idle GPU-hours, 7 days (hours) fewer
    # per day: an hour counted only when idle throughout. Here hour 0 is idle for 25 of its
    # 60 minutes, hour 1 for none, hour 2 throughout.
    node = Node.objects.create(cluster=Cluster.objects.create(name="lab"), hostname="gpu-b")
    gpu = Gpu.objects.create(node=node, uuid="GPU-b0", index=0, model_name=H100,
                             memory_bytes=80 * 2**30)  # fmt: skip
    PriceSheet.objects.create(gpu_kind="H100-SXM", usd_per_gpu_hour="4.0000",
                              source="test", as_of=date(2025, 1, 1))  # fmt: skip
    start = END - timedelta(hours=3)
    samples = []
    for minute in range(180):
        idle = minute < 25 or minute >= 120
        for s in range(0, 60, 5):
            samples.append(GpuSample(gpu=gpu, ts=start + timedelta(minutes=minute, seconds=s),
                                     util_pct=1.0 if idle else 50.0, mem_used_bytes=1))  # fmt: skip
    GpuSample.objects.bulk_create(samples)
    gpu_rollups_compute(start=start, end=END - timedelta(seconds=1))
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)

    by_minute = fleet_overview(window=window, cluster=node.cluster)
    monkeypatch.setattr(fleet, "MINUTE_ROWS_UP_TO", 0)  # as a long window would read it
    by_hour = fleet_overview(window=window, cluster=node.cluster)

    assert (by_minute.resolution, by_hour.resolution) == ("1m", "1h")
    for overview in (by_minute, by_hour):
        assert overview.idle_gpu_hours == pytest.approx(85 / 60)
        assert overview.idle_cost_usd == pytest.approx(85 / 60 * 4.0)
        assert overview.by_deployment[0].idle_hours == pytest.approx(85 / 60)


def test_it_falls_back_to_hour_rollups_where_minutes_are_gone(small_fleet: SmallFleet) -> None:
    overview = fleet_overview(window=week(), cluster=small_fleet.cluster)  # 3 GPUs: minutes
    assert overview.resolution == "1h"  # the fixture holds hour rollups only
    assert overview.observed_gpu_hours == pytest.approx(72.0)
    assert overview.latest_bucket == END - timedelta(days=1)  # the last hour rollup's end


def test_the_page_shows_the_numbers_and_offers_the_latest_data(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    client.force_login(carol)
    response = client.get("/", {"window": "24h"})
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-testid="kpi-gpus"' in text
    # The data is from 2025-03: "now" is later, so the page offers the window ending there.
    assert "No telemetry in this window" in text

    response = client.get("/?" + urlencode({"window": "7d", "end": END.isoformat()}))
    text = response.content.decode()
    assert "No telemetry in this window" not in text
    assert "$40.00" in text  # idle cost
    unpriced = text[text.index('data-testid="unpriced"') :]
    assert "<strong>L4</strong> (1 GPU, 24.0 h idle)" in unpriced
    assert 'id="fig-heatmap"' in text
    # idle is defined once, in minutes, whatever the window's resolution
    idle = text.split('data-testid="idle-definition">')[1].split("</li>")[0]
    assert idle == "Idle GPU-hours: " + escape(definition("idle_gpu_hours"))
    assert "below 5% (every sample of the minute)" in idle


def test_a_bad_window_is_named_and_the_default_used(client: Client, carol, small_fleet) -> None:
    client.force_login(carol)
    response = client.get("/", {"window": "2y", "end": "yesterday", "cluster": "nope"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "window: unknown value &#x27;2y&#x27;" in text
    assert "end: &#x27;yesterday&#x27; is not an ISO 8601 date and time" in text
    assert "cluster: no cluster named &#x27;nope&#x27;" in text


def test_a_cluster_without_gpus_shows_an_empty_fleet(client: Client, carol, small_fleet) -> None:
    # `gpu_id IN ()` cannot be written as SQL: the rollup read raised EmptyResultSet (a 500)
    from probes.models import Cluster

    Cluster.objects.create(name="empty")
    client.force_login(carol)
    response = client.get("/", {"cluster": "empty", "window": "7d", "end": END.isoformat()})
    assert response.status_code == 200
    overview = fleet_overview(window=week(), cluster=Cluster.objects.get(name="empty"))
    assert overview.gpus == ()


def test_an_admins_add_a_price_link_carries_the_unpriced_gpu_kind(
    client: Client, alice, carol, small_fleet: SmallFleet
) -> None:
    client.force_login(alice)
    text = client.get("/?" + urlencode({"window": "7d", "end": END.isoformat()})).content.decode()
    unpriced = text[text.index('data-testid="unpriced"') :].split("</p>")[0]
    assert (
        '<a href="/admin/probes/pricesheet/add/?gpu_kind=L4" data-testid="admin-add-price" '
        'data-gpu-kind="L4">add a price for L4</a>'
    ) in unpriced
    # the admin's add form opens with the kind filled in
    form = client.get("/admin/probes/pricesheet/add/?gpu_kind=L4").content.decode()
    assert 'name="gpu_kind" value="L4"' in form

    client.force_login(carol)
    text = client.get("/?" + urlencode({"window": "7d", "end": END.isoformat()})).content.decode()
    assert "admin-add-price" not in text
    assert "An admin can add a price sheet row." in text
