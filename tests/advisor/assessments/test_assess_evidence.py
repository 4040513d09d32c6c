"""The data floor in an assessment: 1 h of trace in a 7-day window is not enough to price.

Issue 16, item 3: a deployment with the Azure trace's one hour in a 7-day window, on GPUs that
measured 0% all week, was "assessed" with 99% of its minutes assumed (TTFT p95 517,033 s,
simulated 100% busy against 0% measured) at "medium" confidence. The engine's answer is a
fixed outcome here (the service's storing is under test); `llama-8b` has a week of vLLM
counters so one deployment is priced.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from advisor.engine.scenario import Options
from advisor.models import Assessment, AssessmentStatus
from advisor.services import assessments
from advisor.services.assessment_engine import EngineOutcome
from probes.agent.vllm_metrics import Histogram
from probes.models import EngineRollup, GpuRollup, GpuSample
from tests.advisor.assessments.fleet import PRICE_USD, TRACE_END, LabFleet, fleet_build

WEEK_MINUTES = 7 * 1440


def _hist(bounds: list[float], counts: list[float]) -> dict[str, object]:
    cumulative = np.cumsum(counts).tolist()
    pairs = zip([*bounds, float("inf")], cumulative, strict=True)
    return Histogram(tuple(pairs), 0.0, cumulative[-1]).to_json()


def _outcome() -> EngineOutcome:
    today = {"gpus": 1.0, "gpus_peak": 1.0, "usd_per_hour": 4.25, "usd_per_month": 3102.5,
             "util_pct": 40.0}  # fmt: skip
    plan = {"gpus": 1.0, "gpus_peak": 1.0, "usd_per_hour": 2.125, "usd_per_month": 1551.25}
    return EngineOutcome(
        engine_version="test",
        baseline={"fleet": today, "deployments": {"llama-8b": today}},
        strategies={"llama-8b": {}},
        plan={
            "deployments": [{"deployment": "llama-8b", "status": "ok", "baseline": today,
                             "plan": plan}],
            "fleet_baseline": today, "fleet_plan": plan,
            "savings_usd_per_month": 1551.25, "savings_fraction": 0.5,
            "combinations": [], "sensitivity": [],
        },
    )  # fmt: skip


@pytest.fixture
def week(db: Any, monkeypatch: pytest.MonkeyPatch) -> LabFleet:
    """chat: the trace's hour, GPUs at 0% all week; llama-8b: a week of vLLM counters."""
    monkeypatch.setattr(assessments, "scenario_run", lambda scenario, progress: _outcome())
    lab = fleet_build(days=7, interval_s=300)
    chat_gpus = list(lab.chat.gpus.values_list("id", flat=True))
    GpuSample.objects.filter(gpu_id__in=chat_gpus).update(util_pct=0.0)
    GpuRollup.objects.filter(gpu_id__in=chat_gpus).update(
        util_mean_pct=0.0, util_p95_pct=0.0, util_max_pct=0.0
    )
    for hour in range(7 * 24):
        EngineRollup.objects.create(
            deployment=lab.sparse, resolution="1h",
            bucket_start=TRACE_END - timedelta(days=7) + timedelta(hours=hour),
            sample_count=360, running_mean=1, running_max=2, waiting_mean=0, waiting_max=0,
            requests=3600.0,
            histograms={
                "request_prompt_tokens": _hist([100, 1000], [0, 3600, 0]),
                "request_generation_tokens": _hist([10, 100], [1800, 1800, 0]),
            },
        )  # fmt: skip
    return lab


def _assess(capture: Any) -> Assessment:
    with capture(execute=True):
        assessment = assessments.assessment_create(cluster="lab", window="7d", end=TRACE_END)
    assessment.refresh_from_db()
    return assessment


def test_it_does_not_price_one_hour_of_trace_in_a_seven_day_window(
    week: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    assessment = _assess(django_capture_on_commit_callbacks)
    assert assessment.status == AssessmentStatus.COMPLETED
    # not given to the engine: the scenario holds only the deployment with a week of counters
    scenario = json.loads(assessment.scenario)
    assert [d["name"] for d in scenario["deployments"]] == ["llama-8b"]
    gaps = {gap["deployment"]: gap for gap in assessment.data_gaps}
    assert gaps["chat"]["below_floor"] is True
    assert gaps["chat"]["message"] == (
        "deployment chat: not enough data: 60 of 10,080 minutes (0.6%) of the window have a "
        "measured request rate, below the floor of 10%; the other 10,020 would be assumed. "
        "Not priced: it stays at today's cost"
    )
    assert (gaps["chat"]["have"]["counted_minutes"], gaps["chat"]["have"]["window_minutes"]) == (
        60, WEEK_MINUTES,
    )  # fmt: skip
    assert assessment.inputs["deployments"]["chat"]["workload"] is None
    # the totals keep it at today's cost: 3 GPUs at $4.25 for 730 h, on both sides
    hours = Options().hours_per_month
    held_usd = 3 * float(PRICE_USD) * hours
    plan = assessment.plan
    assert [(h["deployment"], h["status"], h["gpus"]) for h in plan["held"]] == [
        ("chat", "not_enough_data", 3.0)
    ]
    assert plan["held"][0]["usd_per_month"] == pytest.approx(held_usd)
    assert plan["fleet_baseline"]["usd_per_month"] == pytest.approx(3102.5 + held_usd)
    assert plan["fleet_plan"]["usd_per_month"] == pytest.approx(1551.25 + held_usd)
    assert plan["fleet_baseline"]["gpus"] == 4.0
    assert plan["savings_usd_per_month"] == 1551.25
    assert plan["savings_fraction"] == pytest.approx(1551.25 / (3102.5 + held_usd))


def test_it_records_how_many_minutes_were_counted_estimated_and_assumed(
    week: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    assessment = _assess(django_capture_on_commit_callbacks)
    workload = assessment.inputs["deployments"]["llama-8b"]["workload"]
    assert (workload["window_minutes"], workload["covered_minutes"]) == (WEEK_MINUTES, 10080)
    assert (workload["estimated_minutes"], workload["assumed_minutes"]) == (0, 0)
