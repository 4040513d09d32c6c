"""Node, GPU and deployment detail pages: GPU telemetry and vLLM engine metrics."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from dashboard.access import role_required
from dashboard.figures import engine as engine_figures
from dashboard.figures import gpus as gpu_figures
from dashboard.selectors.engine import engine_now, engine_series
from dashboard.selectors.gpus import gpu_series, latest_samples
from dashboard.views.common import window_context
from dashboard.windows import window_from
from probes.models import Gpu, ModelDeployment, Node
from probes.roles import VIEWER
from probes.selectors import gpu_moves_of


def _gpu_context(request: HttpRequest, gpus: list[Gpu]) -> dict[str, object]:
    window = window_from(request.GET, default="6h")
    series = gpu_series(gpus=gpus, window=window)
    latest = latest_samples(gpus=gpus)
    context = window_context(request, window)
    context.update(
        series=series,
        rows=[{"gpu": s.gpu, "series": s, "latest": latest.get(s.gpu.pk)} for s in series],
        resolution={None: "raw samples", "1m": "1-minute rollups", "1h": "1-hour rollups"}[
            series[0].resolution if series else None
        ],
        util=gpu_figures.utilization(series),
        memory=gpu_figures.memory(series),
        power=gpu_figures.power(series),
        sm=gpu_figures.sm_activity(series),
    )
    return context


@role_required(VIEWER)
def node(request: HttpRequest, node_id: int) -> HttpResponse:
    target = get_object_or_404(Node.objects.select_related("cluster"), pk=node_id)
    gpus = list(target.gpus.select_related("node").order_by("index"))
    context = _gpu_context(request, gpus)
    deployments = ModelDeployment.objects.filter(gpus__node=target).distinct()
    context.update(
        node=target,
        deployments=deployments,
        engines=engine_now(node=target),
        gpu_moves=gpu_moves_of(node=target),
    )
    return render(request, "dashboard/node.html", context)


@role_required(VIEWER)
def gpu(request: HttpRequest, gpu_id: int) -> HttpResponse:
    target = get_object_or_404(Gpu.objects.select_related("node__cluster"), pk=gpu_id)
    context = _gpu_context(request, [target])
    context.update(gpu=target, node=target.node, deployments=target.deployments.all())
    return render(request, "dashboard/gpu.html", context)


@role_required(VIEWER)
def deployment(request: HttpRequest, deployment_id: int) -> HttpResponse:
    target = get_object_or_404(ModelDeployment.objects.select_related("cluster"), pk=deployment_id)
    window = window_from(request.GET, default="24h")
    series = engine_series(deployment=target, window=window)
    context = window_context(request, window)
    context.update(
        deployment=target,
        series=series,
        gpus=target.gpus.select_related("node").order_by("node__hostname", "index"),
        engines=engine_now(deployment=target),
        queue=engine_figures.queue(series),
        kv=engine_figures.kv_cache(series),
        rates=engine_figures.rates(series),
        tokens=engine_figures.tokens(series),
        latency=engine_figures.latency(series),
        request_rate=series.total("requests") / series.duration_s if series.duration_s else None,
    )
    return render(request, "dashboard/deployment.html", context)
