"""Small scenarios for the strategy and planner tests (fast: short windows, few days)."""

from __future__ import annotations

from typing import Any

import numpy as np

from advisor.engine.context import AssessmentContext
from advisor.engine.perf import CalibrationProfile
from advisor.engine.scenario import (
    DeploymentSpec,
    LoadShape,
    Options,
    Scenario,
    SloSpec,
    WorkloadSpec,
    diurnal_load,
)
from advisor.engine.workload import Workload, synthetic_workload

# A host-heavy H100 profile (the public fit before vLLM V0 and V1 got their own host
# overheads), for tests whose worked figures (batches, replica counts) should not move
# when the public profile is refitted.
HOST_HEAVY_H100 = CalibrationProfile(
    hardware="H100-SXM",
    engine="vllm",
    bw_efficiency=0.9,
    compute_efficiency=0.4469,
    step_overhead_s=3.421e-3,
    allreduce_latency_s=5.376e-5,
)


SIM_REQUESTS = 600
DAYS = 2


def sample(
    rate_rps: float, *, prompt: int = 300, output: int = 150, seed: int = 0, n: int = 2000
) -> Workload:
    rng = np.random.default_rng(seed)
    return synthetic_workload(
        rng,
        num_requests=n,
        rate_rps=rate_rps,
        prompt_tokens=prompt,
        output_tokens=output,
        range_ratio=0.5,
    )


def flat(rate_rps: float, days: float = DAYS) -> LoadShape:
    return LoadShape(np.full(round(days * 1440), float(rate_rps)))


def diurnal(mean_rps: float, ratio: float = 5.0, days: float = DAYS) -> LoadShape:
    return diurnal_load(None, days=days, mean_rps=mean_rps, peak_to_trough=ratio)


def deployment(
    name: str = "chat",
    *,
    rate_rps: float = 1.0,
    load: LoadShape | None = None,
    slo: SloSpec | None = None,
    prompt: int = 300,
    output: int = 150,
    seed: int = 0,
    **changes: Any,
) -> DeploymentSpec:
    workload = WorkloadSpec(
        sample(rate_rps, prompt=prompt, output=output, seed=seed), load or flat(rate_rps)
    )
    fields: dict[str, Any] = {"model": "Llama-3-8B", "hardware": "H100-SXM"}
    fields.update(changes)
    return DeploymentSpec(name=name, workload=workload, slo=slo or SloSpec(), **fields)


def scenario(*deployments: DeploymentSpec, **options: Any) -> Scenario:
    settings = {"sim_requests": SIM_REQUESTS, **options}
    return Scenario(deployments=deployments, options=Options(**settings))


def context(*deployments: DeploymentSpec, **options: Any) -> AssessmentContext:
    return AssessmentContext(scenario(*deployments, **options))


def run(module: Any, ctx: AssessmentContext, name: str) -> Any:
    spec = ctx.scenario.deployment(name)
    return module.evaluate(spec.workload, spec, ctx.prices, spec.slo, context=ctx)
