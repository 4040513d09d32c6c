"""Reads for benchmarks: jobs and runs for the API and dashboard, exports, calibration lookup.

`calibration_profile_for(hardware=..., engine=...)` is what assessments call: the newest
active `CalibrationRecord` fitted on this hardware's benchmarks (with its fit error), else the
engine's built-in profile; it returns both, so the caller can say which one it used.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from advisor.benchmarking.export import REQUEST_COLUMNS, summary_columns
from advisor.engine.perf import CalibrationProfile
from advisor.engine.profiles import DEFAULT_PROFILES
from advisor.models import (
    BenchmarkEndpoint,
    BenchmarkJob,
    BenchmarkRequest,
    BenchmarkRun,
    CalibrationRecord,
)

EXPORT_CHUNK = 2000  # requests read per query when streaming an export


def calibration_profile_for(
    *, hardware: str, engine: str = "vllm"
) -> tuple[CalibrationProfile, CalibrationRecord | None]:
    """The profile later predictions should use for this hardware, and its record if fitted."""
    record = (
        CalibrationRecord.objects.filter(
            hardware__iexact=hardware, engine__iexact=engine, active=True
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if record is not None:
        return CalibrationProfile.from_dict(dict(record.profile)), record
    return DEFAULT_PROFILES.lookup(hardware, engine), None


def benchmark_endpoints_list() -> QuerySet[BenchmarkEndpoint]:
    return BenchmarkEndpoint.objects.select_related("node", "deployment")


def benchmark_jobs_list(*, endpoint_id: int | None = None) -> QuerySet[BenchmarkJob]:
    jobs = BenchmarkJob.objects.select_related("endpoint__node", "endpoint__deployment")
    return jobs.filter(endpoint_id=endpoint_id) if endpoint_id is not None else jobs


def benchmark_job_get(*, job_id: int) -> BenchmarkJob | None:
    return benchmark_jobs_list().filter(id=job_id).first()


def benchmark_runs_of(*, job: BenchmarkJob) -> QuerySet[BenchmarkRun]:
    return BenchmarkRun.objects.filter(job=job).order_by("sequence")


def _request_rows(run: BenchmarkRun) -> Iterator[BenchmarkRequest]:
    requests = BenchmarkRequest.objects.filter(run=run).order_by("index")
    yield from requests.iterator(chunk_size=EXPORT_CHUNK)


def run_json(run: BenchmarkRun, *, include_requests: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "sequence": run.sequence,
        "label": run.label,
        "value": run.value,
        "engine_args": run.engine_args,
        "status": run.status,
        "error": run.error,
        "started_at": run.started_at.isoformat(),
        "duration_s": run.duration_s,
        "workload": run.workload,
        "summary": run.summary,
        "server_metrics": run.server_metrics,
        "metrics_error": run.metrics_error,
        "prompts": run.prompts,
        "config": run.config,
        "warnings": run.warnings,
        "meets_slo": run.meets_slo,
        "gpu_telemetry": run.gpu_telemetry,
        "predicted": run.predicted,
        "prediction_error": run.prediction_error,
    }
    if include_requests:
        data["requests"] = [
            {column: getattr(row, column) for column in _JSON_REQUEST_FIELDS}
            for row in _request_rows(run)
        ]
    return data


_JSON_REQUEST_FIELDS = (
    "index", "status", "scheduled_s", "sent_s", "queue_s", "ttft_s", "tpot_s", "e2e_s", "itl_s",
    "prompt_tokens", "output_tokens", "expected_prompt_tokens", "expected_output_tokens",
    "tokens_from_usage", "http_status", "error",
)  # fmt: skip


def job_json(job: BenchmarkJob, *, include_requests: bool = False) -> dict[str, Any]:
    """The job, its endpoint and every run (with per-request rows when asked)."""
    endpoint = job.endpoint
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "error": job.error,
        "progress": job.progress,
        "cancel_requested": job.cancel_requested,
        "endpoint": {
            "id": endpoint.id,
            "node": endpoint.node.hostname,
            "deployment": endpoint.deployment.served_name,
            "base_url": endpoint.base_url,
            "api": endpoint.api,
        },
        "spec": job.spec,
        "max_concurrency": job.max_concurrency,
        "max_duration_s": job.max_duration_s,
        "result": job.result,
        "created_by": job.created_by.get_username() if job.created_by else None,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "runs": [
            run_json(run, include_requests=include_requests) for run in benchmark_runs_of(job=job)
        ],
    }


def job_export_json(job: BenchmarkJob) -> str:
    return json.dumps(job_json(job, include_requests=True), indent=1, allow_nan=False)


def job_runs_csv(job: BenchmarkJob) -> str:
    """One row per run: the summary columns of `advisor.benchmarking.export`."""
    columns = ["run_id", *summary_columns()]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for run in benchmark_runs_of(job=job):
        row = {key: "" if value is None else value for key, value in run.summary.items()}
        row.update(run_id=run.id, label=run.label, status=run.status, error=run.error)
        writer.writerow(row)
    return out.getvalue()


def run_requests_csv(run: BenchmarkRun) -> Iterator[str]:
    """One row per request, streamed (a run may hold 100,000 requests)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    for row in _request_rows(run):
        writer.writerow(
            [
                row.index, row.status, row.scheduled_s, _blank(row.sent_s), row.queue_s,
                _ms(row.ttft_s), _ms(row.tpot_s), _ms(row.e2e_s), _blank(row.prompt_tokens),
                _blank(row.output_tokens), row.expected_prompt_tokens, row.expected_output_tokens,
                row.tokens_from_usage, _blank(row.http_status), row.error,
                " ".join(f"{gap * 1000.0:.4f}" for gap in row.itl_s),
            ]
        )  # fmt: skip
        if out.tell() > 64 * 1024:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _ms(value_s: float | None) -> str:
    return "" if value_s is None else f"{value_s * 1000.0:.4f}"
