"""A finished assessment row with the real engine's numbers, quick enough for page tests.

The scenario is small (two deployments on H100s, 400 requests of the Azure conversation
trace, one day of load, 200 requests per simulated point) and the engine runs it once per
test process (`engine_answer` is cached); the row's telemetry fields (`measured`, `gap`,
`inputs`) have the shapes `advisor.services.assessments` writes. The full path, from
telemetry to a stored assessment, is covered by the advisor's tests and the demo's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from advisor.engine.scenario import (
    DeploymentSpec,
    EngineArgs,
    LoadShape,
    Options,
    PriceEntry,
    Scenario,
    SloSpec,
    WorkloadSpec,
)
from advisor.engine.workload import Workload, load_azure_trace
from advisor.evidence import Coverage, below_floor_text
from advisor.held import held_entry, plan_hold
from advisor.models import Assessment, AssessmentStatus
from advisor.services.assessment_engine import scenario_run
from advisor.services.whatif import json_safe
from probes.models import Cluster

TRACE = Path(settings.BASE_DIR) / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
PRICE_USD = 4.0
DEPLOYMENTS: tuple[tuple[str, str, int, float, dict[str, Any]], ...] = (
    # name, model, replicas today, mean req/s, engine args
    ("llama", "Llama-3-8B", 3, 2.0, {"max_num_seqs": 64}),
    ("qwen", "Qwen2.5-7B", 2, 1.0, {}),
)
MEASURED_UTIL_PCT = {"llama": 55.0, "qwen": 30.0}


def _scenario(start: datetime) -> Scenario:
    trace = load_azure_trace(TRACE)
    n = 400
    arrival = trace.arrival_s[:n] - trace.arrival_s[0]
    sample = Workload(arrival, trace.prompt_tokens[:n], trace.output_tokens[:n], None, "conv")
    minutes = np.arange(24 * 60)
    day = 1.0 + 0.6 * np.sin(minutes / 1440.0 * 2 * np.pi - np.pi / 2)
    specs = []
    for name, model, replicas, rate, args in DEPLOYMENTS:
        specs.append(
            DeploymentSpec(
                name=name,
                model=model,
                hardware="H100-SXM",
                replicas=replicas,
                engine_args=EngineArgs(**args),
                slo=SloSpec(defaulted=("ttft_p95_s", "tpot_p95_s", "max_quality_loss_points")),
                workload=WorkloadSpec(
                    sample, LoadShape(rate * day, 60.0, start.isoformat()), "test load"
                ),
            )
        )
    return Scenario(
        deployments=tuple(specs),
        prices={"H100-SXM": PriceEntry(PRICE_USD, "test contract (as of 2025-01-01)")},
        options=Options(sim_requests=200),
        name="prod (test)",
    )


@cache
def engine_answer(start_iso: str) -> tuple[str, str, dict[str, Any]]:
    """(scenario JSON, digest, the engine's outcome fields), computed once per process."""
    return _answered(_scenario(datetime.fromisoformat(start_iso)))


def _answered(scenario: Scenario) -> tuple[str, str, dict[str, Any]]:
    """Run `scenario`: its JSON, digest and the engine's outcome fields as stored."""
    outcome = scenario_run(scenario, progress=None)
    fields = {
        "engine_version": outcome.engine_version,
        "baseline": json_safe(outcome.baseline),
        "strategies": json_safe(outcome.strategies),
        "plan": json_safe(outcome.plan),
    }
    return scenario.to_json(), scenario.digest(), fields


def _usage(gpus: int, util: float | None, hours: float) -> dict[str, Any]:
    cost = gpus * hours * PRICE_USD if util is not None else 0.0
    return {
        "gpu_count": gpus, "gpus_reporting": gpus if util is not None else 0,
        "gpus_mean": gpus if util is not None else 0.0, "sample_count": int(hours * 720) * gpus,
        "util_mean_pct": util, "gpu_hours": gpus * hours, "unpriced_gpu_hours": 0.0,
        "cost_usd": cost, "usd_per_hour": cost / hours, "usd_per_month": cost / hours * 730.0,
        "window_hours": hours, "sources": ["hour rollups"],
    }  # fmt: skip


def assessment_completed(
    *, cluster: Cluster, end: datetime, previous: Assessment | None = None
) -> Assessment:
    """A completed assessment of `cluster` over the day before `end` (engine numbers real)."""
    start = end - timedelta(days=1)
    scenario_json, digest, fields = engine_answer(start.isoformat())
    simulated = fields["baseline"]["deployments"]
    measured = {
        "fleet": _usage(6, 45.0, 24.0),
        "unassigned": _usage(1, None, 24.0),
        "deployments": {
            name: _usage(replicas, MEASURED_UTIL_PCT[name], 24.0)
            for name, _model, replicas, _rate, _args in DEPLOYMENTS
        },
        "gpus": {},
    }
    gap = {
        "deployments": {
            name: {
                "util_measured_pct": MEASURED_UTIL_PCT[name],
                "util_simulated_pct": simulated[name]["util_pct"],
                "util_gap_pct_points": MEASURED_UTIL_PCT[name] - simulated[name]["util_pct"],
                "usd_per_month_measured": measured["deployments"][name]["usd_per_month"],
                "usd_per_month_simulated": simulated[name]["usd_per_month"],
                "usd_per_month_gap": measured["deployments"][name]["usd_per_month"]
                - simulated[name]["usd_per_month"],
            }
            for name, *_ in DEPLOYMENTS
        }
    }
    slo = {key: {"value": value, "default": True}
           for key, value in (("ttft_p95_s", 2.0), ("tpot_p95_s", 0.1),
                              ("max_quality_loss_points", 1.0))}  # fmt: skip
    inputs = {
        "gpus_per_node_and_kind": [{"node": "gpu-a", "kind": "H100-SXM", "gpus": 5}],
        "unknown_gpu_names": [],
        "prices": {
            "H100-SXM": {
                "kind": "H100-SXM",
                "usd_per_gpu_hour": PRICE_USD,
                "source": "test contract",
                "as_of": "2025-01-01",
                "from_price_sheet": True,
            },
        },
        "deployments": {
            name: {
                "id": None,
                "model_id": f"org/{model}",
                "model": model,
                "engine_args": args,
                "replicas": replicas,
                "tensor_parallel": {"value": 1, "source": "engine args"},
                "gpus": replicas,
                "kind": "H100-SXM",
                "slo": slo,
                "workload": {
                    "rate_source": "request records",
                    "mean_rate_rps": rate,
                    "peak_rate_rps": rate * 1.6,
                    "burstiness": 1.2,
                    "lengths_source": "request records (test)",
                    "prompt_tokens_p50": 1020.0,
                    "output_tokens_p50": 129.0,
                    "notes": ["test workload"],
                },
            }
            for name, model, replicas, rate, args in DEPLOYMENTS
        },
    }
    data_gaps = [
        {
            "deployment_id": None,
            "deployment": "llama-batch",
            "message": "deployment llama-batch has 2 h of telemetry and no request records; "
            "needs >= 24 h or an imported trace",
            "missing": ["load history: 2 h of telemetry and no request records; needs >= 24 h"],
            "have": {"request_records": 0, "telemetry_hours": 2.0},
        }
    ]
    calibration: dict[str, Any] = {
        "H100-SXM": {"kind": "H100-SXM", "record_id": None, "fit_median_ape": 0.12,
                     "source": "engine default profile (test)", "profile": {}},
    }  # fmt: skip
    return Assessment.objects.create(
        cluster=cluster,
        window_start=start,
        window_end=end,
        status=AssessmentStatus.COMPLETED,
        progress=1.0,
        progress_message="done",
        scenario=scenario_json,
        scenario_digest=digest,
        inputs=inputs,
        calibration=calibration,
        measured=measured,
        gap=json.loads(json.dumps(gap)),
        data_gaps=data_gaps,
        previous=previous,
        finished_at=end,
        **fields,
    )


BIG_REPLICAS = 1
BIG_TENSOR_PARALLEL = 2


@cache
def _big_answer(start_iso: str) -> tuple[str, str, dict[str, Any]]:
    base = _scenario(datetime.fromisoformat(start_iso))
    big = replace(
        base.deployments[0], name="big", model="Llama-3-70B",
        tensor_parallel=BIG_TENSOR_PARALLEL, replicas=BIG_REPLICAS, engine_args=EngineArgs(),
    )  # fmt: skip
    return _answered(replace(base, deployments=(base.deployments[0], big)))


def assessment_with_big(*, cluster: Cluster, end: datetime) -> Assessment:
    """A completed assessment of `llama` (8B, 3 x H100) and `big` (Llama-3-70B, TP 2 on H100s)
    over the day before `end`: the engine's numbers only (no telemetry fields)."""
    start = end - timedelta(days=1)
    scenario_json, digest, fields = _big_answer(start.isoformat())
    return Assessment.objects.create(
        cluster=cluster, window_start=start, window_end=end, status=AssessmentStatus.COMPLETED,
        progress=1.0, progress_message="done", scenario=scenario_json, scenario_digest=digest,
        finished_at=end, **fields,
    )  # fmt: skip


# Issue 16, item 3: what each deployment's evidence was, as the service stores it.
WEAK_COVERAGE = {
    "llama": Coverage(1440, counted_minutes=1440, estimated_minutes=0),  # every minute counted
    "qwen": Coverage(1440, counted_minutes=300, estimated_minutes=276),  # 60% assumed: low
}
CHAT_COVERAGE = Coverage(1440, counted_minutes=60, estimated_minutes=0)  # 1 h: below the floor
CHAT_GPUS = 2


def assessment_with_weak_evidence(*, cluster: Cluster, end: datetime) -> Assessment:
    """`assessment_completed` plus what the evidence said: llama fully measured, qwen with 60%
    of its minutes assumed, and `chat` (1 h of trace in the day, GPUs at 0%) below the data
    floor: not given to the engine, held at today's cost in the plan's totals."""
    assessment = assessment_completed(cluster=cluster, end=end)
    for name, coverage in WEAK_COVERAGE.items():
        assessment.inputs["deployments"][name]["workload"].update(
            covered_minutes=coverage.counted_minutes, **coverage.to_json()
        )
    message = f"deployment chat: {below_floor_text(CHAT_COVERAGE)}"
    assessment.inputs["deployments"]["chat"] = {
        **assessment.inputs["deployments"]["llama"], "gpus": CHAT_GPUS, "workload": None,
    }  # fmt: skip
    assessment.measured["deployments"]["chat"] = _usage(CHAT_GPUS, 0.0, 24.0)
    assessment.data_gaps.append(
        {"deployment_id": None, "deployment": "chat", "message": message, "below_floor": True,
         "missing": ["measured load: 60 of 1,440 minutes"], "have": {"request_records": 19366}}
    )  # fmt: skip
    held = held_entry(
        deployment="chat", status="not_enough_data", reason=message, hardware="H100-SXM",
        gpus=float(CHAT_GPUS), usd_per_gpu_hour=PRICE_USD, hours_per_month=730.0,
    )  # fmt: skip
    assessment.plan = json_safe(plan_hold(assessment.plan, [held]))
    assessment.save()
    return assessment
