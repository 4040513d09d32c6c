"""Node, GPU and deployment detail pages: GPU telemetry and vLLM engine metrics."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from dashboard.access import role_required
from dashboard.figures import engine as engine_figures
from dashboard.figures import gpus as gpu_figures
from dashboard.forms import HfConfigUploadForm
from dashboard.selectors.assessments import deployment_latest_plan
from dashboard.selectors.engine import engine_now, engine_series
from dashboard.selectors.gpus import gpu_series, latest_samples, node_last_seen
from dashboard.views.common import window_context
from dashboard.windows import window_from
from probes.hf_config import config_reading
from probes.models import Gpu, ModelDeployment, Node
from probes.roles import OPERATOR, VIEWER
from probes.selectors import gpu_moves_of
from probes.services.hf_config import HfConfigError, deployment_hf_config_upload


def _gpu_context(request: HttpRequest, gpus: list[Gpu]) -> dict[str, Any]:
    window = window_from(request.GET, default="6h")
    series = gpu_series(gpus=gpus, window=window)
    latest = latest_samples(gpus=gpus)
    context = window_context(request, window)
    context.update(
        series=series,
        rows=[{"gpu": s.gpu, "series": s, "latest": latest.get(s.gpu.pk)} for s in series],
        latest=latest,
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
        last_seen=node_last_seen(node=target, latest=context["latest"]),
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
    return _deployment_page(request, target, HfConfigUploadForm())


@role_required(OPERATOR)
def deployment_config(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """POST: store an uploaded config.json (errors name the value, on the page); GET: the page."""
    target = get_object_or_404(ModelDeployment.objects.select_related("cluster"), pk=deployment_id)
    page = reverse("dashboard:deployment", kwargs={"deployment_id": target.pk})
    if request.method != "POST":
        return redirect(page)
    form = HfConfigUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            reading = deployment_hf_config_upload(
                deployment=target,
                raw=form.cleaned_data["file"].read(),
                username=request.user.get_username(),
            )
        except HfConfigError as exc:
            form.add_error("file", f"{exc.field}: {exc.message}")
        else:
            messages.success(request, f"config.json stored; the engine read: {reading.description}")
            return redirect(page)
    return _deployment_page(request, target, form, status=400)


def _deployment_page(
    request: HttpRequest, target: ModelDeployment, upload: HfConfigUploadForm, status: int = 200
) -> HttpResponse:
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
        reading=config_reading(target.hf_config, name=target.model_id)
        if target.hf_config
        else None,
        upload=upload,
    )
    planned = deployment_latest_plan(cluster_id=target.cluster_id, name=target.served_name)
    context.update(planned=planned, planned_rows=(planned.row,) if planned else ())
    return render(request, "dashboard/deployment.html", context, status=status)
