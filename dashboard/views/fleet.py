"""The fleet overview page (the dashboard's home)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.access import role_required
from dashboard.figures import fleet as figures
from dashboard.selectors.fleet import IDLE_UTIL_PCT, fleet_overview
from dashboard.views.common import cluster_from, window_context
from dashboard.windows import window_from
from probes.models import Cluster, PriceSheet
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
        prices=PriceSheet.objects.all(),
        latest_query=window.ending_at(latest).query(**keep) if latest and stale else "",
        heatmap=figures.utilization_heatmap(overview),
        idle_bars=figures.idle_cost_bars(overview),
        util_histogram=figures.utilization_histogram(overview),
    )
    return render(request, "dashboard/fleet.html", context)
