"""The report archive (viewer), generating a report now (operator), schedules (admin)."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard.access import role_required
from dashboard.models import Report, ReportSchedule, ReportStatus
from dashboard.reports.services import (
    ReportInputError,
    report_create,
    schedule_save,
)
from probes.models import Cluster
from probes.roles import ADMIN, OPERATOR, VIEWER

GENERATE_DAYS = (1, 7, 30)


@role_required(VIEWER)
def reports(request: HttpRequest) -> HttpResponse:
    clusters = list(Cluster.objects.all())
    schedules = {
        s.cluster_id: s for s in ReportSchedule.objects.select_related("periodic_task__crontab")
    }
    return render(
        request,
        "dashboard/reports.html",
        {
            "reports": Report.objects.select_related("cluster", "created_by")[:100],
            "rows": [{"cluster": c, "schedule": schedules.get(c.pk)} for c in clusters],
            "generate_days": GENERATE_DAYS,
            "clusters": clusters,
        },
    )


@role_required(VIEWER)
def report_pdf(request: HttpRequest, report_id: int) -> FileResponse:
    report = get_object_or_404(Report, pk=report_id)
    if report.status != ReportStatus.READY or not report.pdf:
        raise Http404("this report has no PDF (yet)")
    return FileResponse(
        report.pdf.open("rb"), content_type="application/pdf", filename=report.file_name
    )


@role_required(OPERATOR)
def report_generate(request: HttpRequest) -> HttpResponse:
    """POST: queue a report of the last `days` for one cluster (or all)."""
    if request.method != "POST":
        return redirect("dashboard:reports")
    raw_cluster = request.POST.get("cluster") or ""
    cluster = None
    if raw_cluster:
        cluster = Cluster.objects.filter(pk=raw_cluster).first() if raw_cluster.isdigit() else None
        if cluster is None:
            messages.error(request, f"cluster: no cluster with id {raw_cluster!r}")
            return redirect("dashboard:reports")
    raw_days = request.POST.get("days") or "7"
    if not raw_days.isdigit() or int(raw_days) not in GENERATE_DAYS:
        messages.error(request, f"days: one of {', '.join(map(str, GENERATE_DAYS))}")
        return redirect("dashboard:reports")
    report = report_create(cluster=cluster, days=int(raw_days), user=request.user)
    report.refresh_from_db(fields=["status"])  # tasks running inline have rendered it already
    if report.status == ReportStatus.READY:
        messages.success(request, f"Report #{report.pk} rendered.")
    elif report.status == ReportStatus.FAILED:
        messages.error(request, f"Report #{report.pk} failed; its row says why.")
    else:
        messages.success(request, f"Report #{report.pk} queued; it appears here when rendered.")
    return redirect("dashboard:reports")


@role_required(ADMIN)
def schedule_edit(request: HttpRequest, cluster_id: int) -> HttpResponse:
    """POST: a cluster's weekly schedule: recipients, enabled, window days."""
    cluster = get_object_or_404(Cluster, pk=cluster_id)
    if request.method != "POST":
        return redirect("dashboard:reports")
    raw_days = request.POST.get("window_days") or "7"
    try:
        if not raw_days.isdigit():
            raise ReportInputError(f"window_days: {raw_days!r} is not a whole number of days")
        schedule_save(
            cluster=cluster,
            recipients=request.POST.get("recipients", ""),
            enabled=request.POST.get("enabled") == "on",
            days=int(raw_days),
        )
    except ReportInputError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Schedule for {cluster.name} saved.")
    return redirect("dashboard:reports")
