"""Benchmark pages: jobs and the start form (operator+), one job with predicted vs measured,
comparing runs across jobs, and a job's progress as JSON.

Jobs target registered endpoints only (admins register them in the Django admin); the form
is checked field by field and the service's errors are shown on the field they name.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from advisor.models import BenchmarkJob, JobStatus
from advisor.selectors.benchmarks import (
    benchmark_endpoints_list,
    benchmark_job_get,
    benchmark_jobs_list,
)
from advisor.services.benchmarks import (
    BenchmarkJobError,
    benchmark_job_cancel,
    benchmark_job_create,
)
from dashboard.access import role_required
from dashboard.figures import benchmarks as figures
from dashboard.forms import BenchmarkStartForm
from dashboard.selectors.benchmarks import (
    MAX_COMPARE,
    ab_view,
    job_median_error,
    runs_by_ids,
    runs_of,
)
from probes.roles import OPERATOR, VIEWER

LIST_LIMIT = 100
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@role_required(VIEWER, post=OPERATOR)
def benchmark_list(request: HttpRequest) -> HttpResponse:
    """GET: endpoints and jobs; POST: start a job (operator+), errors on the field they name."""
    form = BenchmarkStartForm(request.POST or None)
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                job = benchmark_job_create(user=request.user, **form.job_args())
            except BenchmarkJobError as exc:
                target = form.form_field(exc.field)
                text = f"{exc.field}: {exc.message}"
                if target is not None:
                    form.add_error(target, text)
                errors.append(text)
            else:
                messages.success(request, f"Benchmark #{job.pk} started.")
                return redirect("dashboard:benchmark", job_id=job.pk)
        else:
            for name, problems in list(form.errors.items()):
                # name the field in the message, as the service's errors do
                named = [f"{name}: {problem}" for problem in problems]
                form.errors[name] = form.error_class(named)
                errors.extend(named)
        status = 400
    jobs = list(benchmark_jobs_list().prefetch_related("runs")[:LIST_LIMIT])
    return render(
        request,
        "dashboard/benchmarks.html",
        {
            "form": form,
            "errors": errors,
            "endpoints": list(benchmark_endpoints_list()),
            "jobs": [{"job": job, "median_error": job_median_error(job)} for job in jobs],
        },
        status=status,
    )


def _job(job_id: int) -> BenchmarkJob:
    job = benchmark_job_get(job_id=job_id)
    if job is None:
        raise Http404(f"no benchmark job {job_id}")
    return job


@role_required(VIEWER, post=OPERATOR)
def benchmark_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET: the job, its runs, predicted vs measured; POST action=cancel|calibrate (operator+)."""
    job = _job(job_id)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "cancel":
            try:
                benchmark_job_cancel(job_id=job.pk)
            except BenchmarkJobError as exc:
                messages.error(request, f"{exc.field}: {exc.message}")
            else:
                messages.success(request, f"Benchmark #{job.pk}: cancel requested.")
        elif action == "calibrate":
            if job.status != JobStatus.COMPLETED:
                messages.error(request, f"status: job is {job.status}; calibrate a completed job")
            else:
                from advisor.tasks.bench import fit_calibration

                fit_calibration.delay(job.pk)
                messages.success(request, "Calibration queued; its fit error appears below.")
        else:
            messages.error(request, "action: expected cancel or calibrate")
        return redirect("dashboard:benchmark", job_id=job.pk)
    runs = runs_of(job)
    sweep = (job.spec or {}).get("sweep") or {}
    return render(
        request,
        "dashboard/benchmark.html",
        {
            "job": job,
            "runs": runs,
            "running": job.status in ACTIVE,
            "median_error": job_median_error(job),
            "calibration": (job.result or {}).get("calibration"),
            "ab": ab_view(job),
            "parity": figures.parity(runs),
            "errors_figure": figures.errors(runs),
            "sweep": figures.sweep(runs, over=sweep.get("over", "value")) if sweep else None,
        },
    )


@role_required(VIEWER)
def benchmark_compare(request: HttpRequest) -> HttpResponse:
    """`?run=1&run=7`: runs side by side (any jobs), measured and predicted."""
    ids: list[int] = []
    errors = []
    for raw in request.GET.getlist("run"):
        if raw.isdigit():
            ids.append(int(raw))
        else:
            errors.append(f"run: not a run id: {raw!r}")
    if len(ids) > MAX_COMPARE:
        errors.append(f"run: at most {MAX_COMPARE} runs; showing the first {MAX_COMPARE}")
    runs = runs_by_ids(ids)
    found = {view.run.id for view in runs}
    errors.extend(f"run: no run {i}" for i in ids[:MAX_COMPARE] if i not in found)
    return render(
        request,
        "dashboard/benchmark_compare.html",
        {
            "runs": runs,
            "errors": errors,
            "compare": figures.compare(runs),
            "parity": figures.parity(runs, title="Predicted vs measured, these runs"),
        },
    )


@role_required(VIEWER)
def benchmark_progress(request: HttpRequest, job_id: int) -> JsonResponse:
    row = BenchmarkJob.objects.filter(pk=job_id).values("status", "progress", "error").first()
    if row is None:
        raise Http404(f"no benchmark job {job_id}")
    runs = BenchmarkJob.objects.get(pk=job_id).runs.count()
    return JsonResponse(
        {
            "status": row["status"],
            "progress": row["progress"],
            "message": f"{row['status']}: {runs} run{'s' if runs != 1 else ''} measured",
            "error": row["error"],
            "done": row["status"] not in ACTIVE,
        }
    )
