"""Calibration from benchmark runs: fit the engine's profile for a node's hardware, store it.

`calibration_fit(job_id=...)` takes a finished job's closed-loop runs with fixed lengths (a
concurrency sweep is the usual source: each concurrency is one point), fits the profile
parameters the engine's own fidelity harness fits (`prediction.DEFAULT_FIT`) starting from
the profile predictions use today, and stores a `CalibrationRecord` with the per-point fit
error. Later predictions and assessments pick the newest active record for that hardware
(`advisor.selectors.benchmarks.calibration_profile_for`), and say which one they used.
"""

from __future__ import annotations

from dataclasses import replace

from advisor.benchmarking.prediction import (
    DEFAULT_FIT,
    EngineTarget,
    PredictionError,
    calibrate,
    measured_point,
)
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.engine.calibration import MeasuredPoint
from advisor.models import BenchmarkJob, CalibrationRecord, JobKind
from advisor.selectors.benchmarks import benchmark_runs_of, calibration_profile_for


class CalibrationError(ValueError):
    """The job cannot calibrate a profile; the message says what is missing."""


def calibration_fit(*, job_id: int) -> CalibrationRecord:
    """Fit and store a profile from the job's runs; raises CalibrationError when it cannot."""
    job = BenchmarkJob.objects.select_related("endpoint__deployment").filter(id=job_id).first()
    if job is None:
        raise CalibrationError(f"job: no benchmark job {job_id}")
    endpoint = job.endpoint
    if not endpoint.hardware:
        raise CalibrationError(
            f"endpoint {endpoint}: its hardware is not set, so there is nothing to calibrate"
        )
    if job.kind == JobKind.AB:
        raise CalibrationError("job: an A/B mixes two configurations; calibrate from one")
    points: list[MeasuredPoint] = []
    for run in benchmark_runs_of(job=job):
        spec = WorkloadSpec.from_json(run.workload)
        if spec.kind != "concurrency":
            continue  # open-loop and replayed runs are not the engine's closed-loop points
        point = measured_point(run.status, run.summary, spec.build())
        if point is not None:
            points.append(point)
    if len(points) < 2:
        raise CalibrationError(
            f"job {job_id}: {len(points)} usable run(s); calibration needs at least 2 completed "
            "closed-loop runs with fixed lengths (e.g. a concurrency sweep)"
        )
    target = EngineTarget(
        hardware=endpoint.hardware,
        model=endpoint.model_ref or endpoint.deployment.model_id,
        quant=endpoint.quant,
        kv_cache_bytes=endpoint.kv_cache_bytes,
        engine_args=dict(endpoint.deployment.engine_args or {}),
    )
    current, _record = calibration_profile_for(hardware=target.hardware, engine=target.engine)
    start = replace(current, hardware=target.hardware, engine=target.engine)
    try:
        fit = calibrate(
            target,
            points,
            start=start,
            fit=DEFAULT_FIT,
            source=f"benchmark job {job.id} on {endpoint}",
        )
    except PredictionError as exc:
        raise CalibrationError(str(exc)) from exc
    return CalibrationRecord.objects.create(
        hardware=target.hardware,
        engine=target.engine,
        profile=fit.profile.to_dict(),
        fitted=list(fit.fitted),
        errors=[
            {"label": e.label, "measured": e.measured, "predicted": e.predicted, "ape": e.ape}
            for e in fit.errors
        ],
        fit_median_ape=fit.median_ape,
        fit_mean_ape=fit.mean_ape,
        points=[
            {
                "concurrency": p.concurrency,
                "input_tokens": p.input_tokens,
                "output_tokens": p.output_tokens,
                "output_tok_per_s": p.output_tok_per_s,
                "median_ttft_s": p.median_ttft_s,
                "median_tpot_s": p.median_tpot_s,
                "num_requests": p.num_requests,
            }
            for p in points
        ],
        source_job=job,
    )
