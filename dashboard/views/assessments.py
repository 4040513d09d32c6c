"""Assessment pages: the list with its trend and start form, one assessment, its progress.

Starting needs the operator role (POST); reading is for viewers. A started assessment runs
on the `sim` queue (in-process when no broker is configured, as in the demo); its page
polls `progress.json` (static/js/progress.js) and reloads when it is done.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from advisor.models import Assessment, AssessmentStatus
from advisor.selectors.assessments import assessment_get, assessments_list
from advisor.services.assessments import (
    AssessmentInputError,
    AssessmentThrottled,
    assessment_start,
)
from dashboard.access import role_required
from dashboard.demo_notice import demo_notice
from dashboard.figures import assessments as figures
from dashboard.forms import AssessmentStartForm
from dashboard.selectors.assessments import (
    assessment_trend,
    assessment_view,
    assumptions_of,
    calibration_range,
    calibration_views,
    combination_label,
    measured_assessed,
)
from dashboard.selectors.rollouts import deployment_ids
from probes.models import Cluster
from probes.roles import OPERATOR, VIEWER

LIST_LIMIT = 100


@role_required(VIEWER, post=OPERATOR)
def assessment_list(request: HttpRequest) -> HttpResponse:
    """GET: assessments, newest first, with each cluster's trend; POST: start one."""
    form = AssessmentStartForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                started = assessment_start(
                    cluster=form.cleaned_data["cluster"],
                    window=form.cleaned_data["window"],
                    user=request.user,
                )
            except AssessmentInputError as exc:
                form.add_error(None, f"{exc.field}: {exc.message}")
            except AssessmentThrottled as exc:
                form.add_error(None, exc.message)
                status = 429
            else:
                assessment = started.assessment
                if started.created:
                    messages.success(request, f"Assessment #{assessment.pk} started.")
                else:
                    messages.info(
                        request,
                        f"Assessment #{assessment.pk} of this cluster and window is already "
                        f"{assessment.status}: showing it instead of starting another.",
                    )
                return redirect("dashboard:assessment", assessment_id=assessment.pk)
    rows = list(assessments_list()[:LIST_LIMIT])
    clusters = list(Cluster.objects.all())
    trends = []
    for cluster in clusters:
        points = assessment_trend(cluster_id=cluster.pk)
        if points:
            trends.append({"cluster": cluster, "points": points, "figure": figures.trend(points)})
    return render(
        request,
        "dashboard/assessments.html",
        {"assessments": rows, "form": form, "trends": trends, "clusters": clusters},
        status=status,
    )


def _get(assessment_id: int) -> Assessment:
    assessment = assessment_get(assessment_id=assessment_id)
    if assessment is None:
        raise Http404(f"no assessment {assessment_id}")
    return assessment


@role_required(VIEWER)
def assessment_detail(request: HttpRequest, assessment_id: int) -> HttpResponse:
    assessment = _get(assessment_id)
    view = assessment_view(assessment)
    calibrations = calibration_views(assessment)
    done = assessment.status == AssessmentStatus.COMPLETED
    return render(
        request,
        "dashboard/assessment.html",
        {
            "assessment": assessment,
            "view": view,
            "measured": measured_assessed(assessment, view),
            "demo_notice": demo_notice(assessment.cluster.name),
            "calibrations": calibrations,
            "calibration_range": calibration_range(view),
            "assumptions": assumptions_of(assessment, view),
            "combination_rows": [
                {**row, "label": combination_label(row.get("strategies") or ())}
                for row in view.combinations
            ],
            "whatifs": list(assessment.whatifs.select_related("created_by")[:20]),
            "deployment_ids": deployment_ids(cluster_id=assessment.cluster_id),
            "running": assessment.status in (AssessmentStatus.QUEUED, AssessmentStatus.RUNNING),
            "waterfall": figures.waterfall(view) if done else None,
            "strategy_bars": figures.strategy_savings(view) if done else None,
            "today_vs_plan": figures.today_vs_plan(view) if done else None,
            "sensitivity": figures.sensitivity(view) if done else None,
        },
    )


@role_required(VIEWER)
def assessment_progress(request: HttpRequest, assessment_id: int) -> JsonResponse:
    """Status and progress as JSON, polled by the assessment page while it runs."""
    row = (
        Assessment.objects.filter(pk=assessment_id)
        .values("status", "progress", "progress_message", "error")
        .first()
    )
    if row is None:
        raise Http404(f"no assessment {assessment_id}")
    finished = row["status"] in (AssessmentStatus.COMPLETED, AssessmentStatus.FAILED)
    return JsonResponse(
        {
            "status": row["status"],
            "progress": row["progress"],
            "message": row["progress_message"],
            "error": row["error"],
            "done": finished,
        }
    )
