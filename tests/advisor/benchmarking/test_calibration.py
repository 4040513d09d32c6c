"""Calibration from benchmark runs: a profile fitted, stored with its error, then used."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from advisor.benchmarking.prediction import EngineTarget, predict
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.engine.profiles import DEFAULT_PROFILES
from advisor.models import BenchmarkJob, BenchmarkRun, CalibrationRecord
from advisor.selectors.benchmarks import calibration_profile_for
from advisor.services.calibration import CalibrationError, calibration_fit
from tests.advisor.benchmarking.conftest import make_endpoint

HARDWARE, MODEL_REF = "H100-SXM", "Llama-3-8B"
# What the "node" really does: a profile unlike the built-in one the fit starts from.
TRUE_PROFILE = replace(
    DEFAULT_PROFILES.lookup(HARDWARE, "vllm"), compute_efficiency=0.25, step_overhead_s=6e-3
)


def _job_with_measured_runs(db: Any, concurrencies: list[int]) -> BenchmarkJob:
    endpoint = make_endpoint("http://127.0.0.1:9", hardware=HARDWARE, model_ref=MODEL_REF)
    job = BenchmarkJob.objects.create(endpoint=endpoint, kind="sweep", spec={}, status="completed",
                                      max_concurrency=64, max_duration_s=60)  # fmt: skip
    target = EngineTarget(HARDWARE, MODEL_REF)
    for sequence, concurrency in enumerate(concurrencies, start=1):
        spec = WorkloadSpec("concurrency", num_requests=4 * concurrency, concurrency=concurrency,
                            prompt_tokens=256, output_tokens=128)  # fmt: skip
        figures = predict(target.replica(TRUE_PROFILE), spec.build())
        BenchmarkRun.objects.create(
            job=job, sequence=sequence, label=f"concurrency {concurrency}",
            value=concurrency, status="completed", started_at=datetime.now(UTC), duration_s=1.0,
            workload=spec.to_json(), summary=figures,
        )  # fmt: skip
    return job


def test_it_fits_a_profile_from_a_sweep_and_stores_its_error(db: Any) -> None:
    job = _job_with_measured_runs(db, [1, 8, 32])

    record = calibration_fit(job_id=job.id)

    assert record.hardware == HARDWARE
    assert record.source_job == job
    assert len(record.points) == 3
    assert len(record.errors) == 9  # 3 points x (tok/s, median TTFT, median TPOT)
    assert record.fit_median_ape < 0.05  # the runs came from a profile the model can express
    profile, found = calibration_profile_for(hardware=HARDWARE)
    assert found == record
    assert profile.source.startswith(f"benchmark job {job.id}")
    assert profile.fit_median_ape == pytest.approx(record.fit_median_ape)


def test_it_falls_back_to_the_built_in_profile(db: Any) -> None:
    profile, record = calibration_profile_for(hardware="A100-80GB")

    assert record is None
    assert profile == DEFAULT_PROFILES.lookup("A100-80GB", "vllm")


def test_it_needs_two_closed_loop_points(db: Any) -> None:
    job = _job_with_measured_runs(db, [4])

    with pytest.raises(CalibrationError, match="at least 2"):
        calibration_fit(job_id=job.id)
    assert not CalibrationRecord.objects.exists()


def test_it_needs_the_endpoints_hardware(db: Any) -> None:
    job = _job_with_measured_runs(db, [1, 8])
    job.endpoint.hardware = ""
    job.endpoint.save()

    with pytest.raises(CalibrationError, match="hardware"):
        calibration_fit(job_id=job.id)
