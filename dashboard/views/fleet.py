"""The fleet overview page (the dashboard's home) and the list of all GPUs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.access import role_required
from dashboard.demo_notice import demo_notice
from dashboard.figures import fleet as figures
from dashboard.selectors.fleet import MINUTE_ROWS_UP_TO, GpuUsage, fleet_overview
from dashboard.views.common import cluster_from, window_context
from dashboard.windows import window_from
from probes.models import IDLE_UTIL_PCT, Cluster, PriceSheet
from probes.roles import VIEWER


@role_required(VIEWER)
def fleet(request: HttpRequest) -> HttpResponse:
    window = window_from(request.GET)
    cluster, cluster_errors = cluster_from(request)
    overview = fleet_overview(window=window, cluster=cluster)
    keep = {"cluster": cluster.name} if cluster else {}
    context = window_context(request, window, **keep)
    context["errors"] += cluster_errors
    latest = overview.latest_bucket
    stale = latest is not None and latest <= window.start
    context.update(
        overview=overview,
        clusters=Cluster.objects.all(),
        cluster=cluster,
        idle_util_pct=IDLE_UTIL_PCT,
        minute_rows=MINUTE_ROWS_UP_TO,
        prices=PriceSheet.objects.all(),
        latest_query=window.ending_at(latest).query(**keep) if latest and stale else "",
        demo_notice=demo_notice(cluster.name if cluster else None),
        heatmap=figures.utilization_heatmap(overview),
        idle_bars=figures.idle_cost_bars(overview),
        util_histogram=figures.utilization_histogram(overview),
    )
    return render(request, "dashboard/fleet.html", context)


# Sort keys of the GPU list: (label, numeric?, key function; larger first unless by name).
SORTS: dict[str, tuple[str, bool, Callable[[GpuUsage], Any]]] = {
    "name": ("GPU", False, lambda g: (g.hostname, g.index)),
    "model": ("model", False, lambda g: g.model_name),
    "observed": ("observed", True, lambda g: g.observed_hours),
    "util": ("mean util", True, lambda g: g.util_mean_pct or 0.0),
    "p95": ("p95 util", True, lambda g: g.util_p95_pct or 0.0),
    "idle": ("idle", True, lambda g: g.idle_hours),
    "idle_cost": ("idle cost", True, lambda g: g.idle_cost_usd or 0.0),
    "cost": ("cost", True, lambda g: g.cost_usd or 0.0),
}


@role_required(VIEWER)
def gpu_list(request: HttpRequest) -> HttpResponse:
    window = window_from(request.GET)
    cluster, cluster_errors = cluster_from(request)
    overview = fleet_overview(window=window, cluster=cluster)
    sort = request.GET.get("sort") or "idle_cost"
    errors = []
    if sort not in SORTS:
        errors.append(f"sort: unknown value {sort!r}; one of {', '.join(SORTS)}")
        sort = "idle_cost"
    _label, numeric, key = SORTS[sort]
    gpus = sorted(overview.gpus, key=key, reverse=numeric)
    keep = {"cluster": cluster.name} if cluster else {}
    context = window_context(request, window, **keep)
    context["errors"] += cluster_errors + errors
    context.update(
        cluster=cluster,
        gpus=gpus,
        sort=sort,
        columns=[(k, label, num) for k, (label, num, _f) in SORTS.items()],
    )
    return render(request, "dashboard/gpus.html", context)
