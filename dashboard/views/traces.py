"""The traces page (what the requests look like) and the trace upload (operator+)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from advisor.engine.bounds import ASSESSMENT_WINDOWS
from advisor.models import AssessmentSchedule
from dashboard.access import role_required
from dashboard.figures import traces as figures
from dashboard.forms import TraceImportForm
from dashboard.selectors.traces import trace_stats
from dashboard.views.common import window_context
from dashboard.windows import PRESETS, Window, window_from
from probes.models import ModelDeployment, TraceImport
from probes.roles import OPERATOR, VIEWER
from probes.services import import_trace
from probes.trace_shift import outside_windows


def assessment_windows(deployment: ModelDeployment) -> list[tuple[str, timedelta]]:
    """The windows assessments read: the offered ones and the cluster's schedule's."""
    windows = list(ASSESSMENT_WINDOWS)
    schedule = AssessmentSchedule.objects.filter(cluster_id=deployment.cluster_id).first()
    if schedule is not None:
        span = timedelta(days=schedule.window_days)
        if all(span != known for _key, known in windows):
            windows.append((f"{schedule.window_days}d", span))
    return sorted(windows, key=lambda w: w[1])


def _import_rows(imports: list[TraceImport], now: datetime) -> list[tuple[TraceImport, str]]:
    """Each import with its warning (empty when an assessment window overlaps it)."""
    rows = []
    for t in imports:
        warning = None
        if t.first_arrival_ts and t.last_arrival_ts:
            warning = outside_windows(
                t.first_arrival_ts, t.last_arrival_ts, now=now,
                windows=assessment_windows(t.deployment),
            )  # fmt: skip
        rows.append((t, warning or ""))
    return rows


def _deployment_from(request: HttpRequest) -> tuple[ModelDeployment | None, list[str]]:
    deployments = ModelDeployment.objects.select_related("cluster")
    raw = request.GET.get("deployment") or ""
    if raw:
        found = deployments.filter(pk=int(raw)).first() if raw.isdigit() else None
        if found is None:
            first = deployments.first()
            return first, [f"deployment: no deployment with id {raw!r}"]
        return found, []
    return deployments.first(), []


@role_required(VIEWER)
def traces(request: HttpRequest) -> HttpResponse:
    window = window_from(request.GET)
    deployment, errors = _deployment_from(request)
    keep = {"deployment": str(deployment.pk)} if deployment else {}
    context = window_context(request, window, **keep)
    context["errors"] += errors
    context.update(
        deployment=deployment,
        deployments=ModelDeployment.objects.select_related("cluster"),
        imports=_import_rows(
            list(TraceImport.objects.select_related("deployment", "created_by")[:20]),
            datetime.now(UTC),
        ),
        form=TraceImportForm(initial={"deployment": deployment}),
    )
    if deployment is not None:
        stats = trace_stats(deployment=deployment, window=window)
        latest = stats.latest_arrival
        stale = stats.request_count == 0
        context.update(
            stats=stats,
            prompt=stats.percentiles(stats.prompt_tokens),
            output=stats.percentiles(stats.output_tokens),
            ttft=stats.percentiles(stats.ttft_s),
            e2e=stats.percentiles(stats.e2e_s),
            latest_query=(
                window.ending_at(latest + timedelta(seconds=1)).query(**keep)
                if latest is not None and stale
                else ""
            ),
            rate=figures.arrival_rate(stats),
            lengths=figures.lengths(stats),
            gaps=figures.inter_arrivals(stats),
        )
    return render(request, "dashboard/traces.html", context)


@role_required(OPERATOR)
def trace_upload(request: HttpRequest) -> HttpResponse:
    """GET: the form; POST: check the form, call the import service, list what it found."""
    report = None
    view_query = ""
    form = TraceImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = data["file"]
        report = import_trace(
            deployment=data["deployment"],
            file=upload.file,
            format=data["format"],
            dry_run=data["dry_run"],
            start=data["start"],
            shift_start_at=data["shift_start_at"],
            shift_end_now=data["shift_end_now"],
            windows=assessment_windows(data["deployment"]),
            file_name=upload.name,
            user=request.user,
        )
        if report.ok and report.last_arrival is not None and report.first_arrival is not None:
            span = report.last_arrival - report.first_arrival
            key = next((k for k, v in PRESETS.items() if v >= span), "30d")
            end = report.last_arrival + timedelta(seconds=1)
            shown = Window(key, end - PRESETS[key], end, end_given=True)
            view_query = shown.query(deployment=str(data["deployment"].pk))
    status = 400 if report is not None and not report.ok else 200
    if request.method == "POST" and not form.is_valid():
        status = 400
    return render(
        request,
        "dashboard/trace_upload.html",
        {"form": form, "report": report, "view_query": view_query},
        status=status,
    )
