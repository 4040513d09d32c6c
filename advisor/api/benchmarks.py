"""Benchmark API: list endpoints, start / list / inspect / cancel / export jobs, calibrate.

Thin views: check the role, validate through the service (errors name the field), call one
service or selector, respond. Any role may read; starting, cancelling and calibrating need
`advisor.run_benchmark` (operators and admins). Jobs target registered endpoints by id only.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from advisor.api.bodies import BodyError, json_object
from advisor.api.permissions import HasRequiredRole
from advisor.models import BenchmarkRun, JobStatus
from advisor.selectors.benchmarks import (
    benchmark_endpoints_list,
    benchmark_job_get,
    benchmark_jobs_list,
    job_export_json,
    job_json,
    job_runs_csv,
    run_requests_csv,
)
from advisor.services.ab_controller import ab_possible
from advisor.services.benchmarks import (
    BenchmarkJobError,
    benchmark_job_cancel,
    benchmark_job_create,
)
from probes.roles import OPERATOR, VIEWER

RUN_PERMISSION = "advisor.run_benchmark"
LIST_LIMIT = 200


# Any role reads; writes need `advisor.run_benchmark` (operators and admins). No docstring:
# drf-spectacular would give it to every view below as its description.
class _BenchmarkView(APIView):
    permission_classes = [HasRequiredRole]
    required_role = {"GET": VIEWER, "POST": OPERATOR}  # read by the URL-walk test
    required_permission = RUN_PERMISSION


def _errors(error: BenchmarkJobError, status: int = 400) -> Response:
    return Response({"errors": [{"field": error.field, "message": error.message}]}, status=status)


class JobCreateDoc(serializers.Serializer[Any]):
    endpoint = serializers.IntegerField(help_text="id of a registered benchmark endpoint")
    kind = serializers.ChoiceField(choices=["run", "sweep", "goodput", "ab"])
    workload = serializers.JSONField(help_text="WorkloadSpec: kind poisson|concurrency|replay")
    trace = serializers.JSONField(required=False, help_text="replay: {start, end} ISO times")
    sweep = serializers.JSONField(required=False, help_text="{over: rate|concurrency, values}")
    goodput = serializers.JSONField(required=False, help_text="{min_rate_rps, max_rate_rps, ...}")
    ab = serializers.JSONField(
        required=False,
        help_text="{baseline_args, candidate_args, label, candidate_model, candidate_quant, "
        "candidate_quality: {delta_points, source}} (and baseline_*)",
    )
    slo = serializers.JSONField(required=False, help_text="{ttft_ms, tpot_ms, e2el_ms, ...}")
    options = serializers.JSONField(required=False)
    max_concurrency = serializers.IntegerField(required=False)
    max_duration_s = serializers.IntegerField(required=False)


class ErrorDoc(serializers.Serializer[Any]):
    errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]


class EndpointListView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_endpoints_list", responses={200: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        return Response(
            [
                {
                    "id": e.id, "node": e.node.hostname, "deployment": e.deployment.served_name,
                    "base_url": e.base_url, "api": e.api, "max_concurrency": e.max_concurrency,
                    "max_duration_s": e.max_duration_s, "max_requests": e.max_requests,
                    "hardware": e.hardware, "ab": ab_possible(e),
                }
                for e in benchmark_endpoints_list()
            ]
        )  # fmt: skip


class JobListView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_jobs_list", responses={200: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        jobs = benchmark_jobs_list()[:LIST_LIMIT]
        return Response([{k: v for k, v in job_json(job).items() if k != "runs"} for job in jobs])

    @extend_schema(
        operation_id="benchmark_jobs_create",
        request=JobCreateDoc,
        responses={201: OpenApiResponse(), 400: ErrorDoc, 403: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        try:
            data = json_object(request, fields=JobCreateDoc().fields)
        except BodyError as exc:
            return _errors(BenchmarkJobError(exc.field, exc.message))
        try:
            job = benchmark_job_create(
                user=request.user,
                endpoint_id=data.get("endpoint"),
                kind=data.get("kind"),
                workload=data.get("workload"),
                trace=data.get("trace"),
                sweep=data.get("sweep"),
                goodput=data.get("goodput"),
                ab=data.get("ab"),
                slo=data.get("slo"),
                options=data.get("options"),
                max_concurrency=data.get("max_concurrency"),
                max_duration_s=data.get("max_duration_s"),
            )
        except BenchmarkJobError as exc:
            return _errors(exc)
        return Response(job_json(job), status=201)


class JobDetailView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_jobs_retrieve", responses={200: OpenApiResponse()})
    def get(self, request: Request, job_id: int) -> Response:
        job = benchmark_job_get(job_id=job_id)
        if job is None:
            return Response({"errors": [{"field": "job", "message": "not found"}]}, status=404)
        return Response(job_json(job))


class JobCancelView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_jobs_cancel", request=None,
                   responses={200: OpenApiResponse(), 409: ErrorDoc})  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        try:
            job = benchmark_job_cancel(job_id=job_id)
        except BenchmarkJobError as exc:
            return _errors(exc, status=404 if exc.field == "job" else 409)
        return Response(job_json(job))


class JobCalibrateView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_jobs_calibrate", request=None,
                   responses={202: OpenApiResponse(), 409: ErrorDoc})  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        job = benchmark_job_get(job_id=job_id)
        if job is None:
            return Response({"errors": [{"field": "job", "message": "not found"}]}, status=404)
        if job.status != JobStatus.COMPLETED:
            return _errors(BenchmarkJobError("status", f"job is {job.status}"), status=409)
        from advisor.tasks.bench import fit_calibration

        fit_calibration.delay(job.id)
        return Response({"queued": True}, status=202)


class JobExportView(_BenchmarkView):
    """`?format=json` (everything, per-request rows included) or `csv` (one row per run)."""

    @extend_schema(operation_id="benchmark_jobs_export", responses={200: OpenApiResponse()})
    def get(self, request: Request, job_id: int) -> HttpResponse | Response:
        job = benchmark_job_get(job_id=job_id)
        if job is None:
            return Response({"errors": [{"field": "job", "message": "not found"}]}, status=404)
        kind = request.query_params.get("as", "json")
        if kind == "csv":
            response = HttpResponse(job_runs_csv(job), content_type="text/csv")
        elif kind == "json":
            response = HttpResponse(job_export_json(job), content_type="application/json")
        else:
            return _errors(BenchmarkJobError("as", "expected json or csv"))
        response["Content-Disposition"] = f'attachment; filename="benchmark-{job.id}.{kind}"'
        return response


class RunRequestsCsvView(_BenchmarkView):
    @extend_schema(operation_id="benchmark_run_requests_csv", responses={200: OpenApiResponse()})
    def get(self, request: Request, job_id: int, run_id: int) -> StreamingHttpResponse | Response:
        run = BenchmarkRun.objects.filter(id=run_id, job_id=job_id).first()
        if run is None:
            return Response({"errors": [{"field": "run", "message": "not found"}]}, status=404)
        response = StreamingHttpResponse(run_requests_csv(run), content_type="text/csv")
        name = f"benchmark-{job_id}-run-{run.sequence}-requests.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
