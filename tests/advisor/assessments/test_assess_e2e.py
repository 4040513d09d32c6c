"""End to end on PostgreSQL with a real Celery worker: from the fleet's data to a stored plan.

The Azure conversation trace is imported for one deployment and 7 days of GPU samples are
synthesized for a small fleet; the assessment runs on the worker's `sim` queue. Then: the
measured utilization is exactly the samples' mean, every strategy is there with its config
change, re-running the stored snapshot gives the same numbers, and the deployment without
enough data gets its message while the other is assessed.
"""

from __future__ import annotations

import time
from subprocess import Popen

import numpy as np
import pytest

from advisor.engine.scenario import Scenario
from advisor.engine.strategies.registry import names as strategy_names
from advisor.models import Assessment, AssessmentStatus
from advisor.services.assessments import assessment_create, assessment_rerun
from tests.advisor.assessments.fleet import TRACE_END, fleet_build

pytestmark = pytest.mark.integration
TIMEOUT_S = 600.0


def _wait(assessment_id: int) -> Assessment:
    deadline = time.monotonic() + TIMEOUT_S
    seen = []
    while time.monotonic() < deadline:
        row = Assessment.objects.get(pk=assessment_id)
        seen.append(row.progress)
        if row.status in (AssessmentStatus.COMPLETED, AssessmentStatus.FAILED):
            assert seen == sorted(seen)  # progress only moves forward
            return row
        time.sleep(0.5)
    raise AssertionError(f"assessment {assessment_id} still {row.status} after {TIMEOUT_S} s")


def test_it_assesses_a_fleet_from_its_own_data_on_the_sim_queue(
    celery_worker: Popen[bytes],
) -> None:
    lab = fleet_build(days=7, interval_s=60)
    queued = assessment_create(cluster=lab.cluster, window="7d", end=TRACE_END)
    assessment = _wait(queued.pk)
    assert assessment.status == AssessmentStatus.COMPLETED, assessment.error
    assert (assessment.progress, assessment.progress_message) == (1.0, "done")

    # Measured, not simulated: exactly what the samples say.
    chat_ids = [gpu.pk for gpu in lab.chat.gpus.all()]
    chat_util = np.concatenate([lab.util[gpu_id] for gpu_id in chat_ids])
    every = np.concatenate(list(lab.util.values()))
    measured = assessment.measured
    assert measured["deployments"]["chat"]["util_mean_pct"] == chat_util.sum() / chat_util.size
    assert measured["fleet"]["util_mean_pct"] == every.sum() / every.size
    assert measured["fleet"]["gpu_hours"] == 3 * 168 + 2
    assert measured["fleet"]["cost_usd"] == 4.25 * (3 * 168 + 2)

    # Not enough data is an answer; the other deployment is still assessed.
    assert [gap["message"] for gap in assessment.data_gaps] == [
        "deployment llama-8b has 2 h of telemetry and no request records; "
        "needs >= 24 h or an imported trace"
    ]
    assert assessment.inputs["deployments"]["llama-8b"]["workload"] is None

    # Every strategy, with its config change; the plan and the baseline beside the telemetry.
    results = assessment.strategies["chat"]
    assert set(results) == set(strategy_names())
    assert len(results) == 5
    for name, result in results.items():
        assert result["strategy"] == name
        assert isinstance(result["config_change"]["engine_args"], dict)
        if result["status"] == "recommended":
            change = result["config_change"]
            assert (
                change["engine_args"]
                or change["replicas"] is not None
                or change["model_path"]
                or change["manifests"]
            ), name
    assert [d["deployment"] for d in assessment.plan["deployments"]] == ["chat"]
    gap = assessment.gap["deployments"]["chat"]
    assert gap["util_measured_pct"] == chat_util.sum() / chat_util.size
    assert gap["util_gap_pct_points"] == gap["util_measured_pct"] - gap["util_simulated_pct"]
    assert assessment.engine_version
    assert assessment.calibration["H100-SXM"]["record_id"] is None  # no benchmark: default

    # The snapshot is what ran, and running it again gives the same numbers.
    # The digest identifies the stored JSON's content (arrays hashed by their bytes).
    assert assessment.scenario_digest == Scenario.from_json(assessment.scenario).digest()
    assert len(assessment.scenario_digest) == 64
    _outcome, differ = assessment_rerun(assessment=assessment)
    assert differ == []
