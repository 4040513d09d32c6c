"""The bridge from the database's view of a fleet to the engine: build a `Scenario`, run it.

`scenario_build` turns the fleet (`advisor.selectors.assessment_fleet`) and each derived
workload into the engine's frozen `Scenario` (deployments with their current vLLM args,
hardware kind, request sample and 1-minute load, SLOs with defaults marked, prices with
their source, fitted calibration profiles). A deployment whose stored engine args the engine
cannot read becomes a data gap naming the argument, and the others go on.
`scenario_run` runs the engine's planner on a scenario; it is all the engine this module
knows, so re-running a stored snapshot goes through exactly the same call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from advisor.engine.advice import Plan, Projection
from advisor.engine.scenario import (
    DeploymentSpec,
    EngineArgs,
    LoadShape,
    Options,
    PriceEntry,
    Scenario,
    ScenarioError,
    SloSpec,
    SpecDecodeCounters,
    SpeculativeSpec,
    WorkloadSpec,
)
from advisor.engine.workload import Workload
from advisor.selectors.assessment_fleet import DeploymentFleet, Fleet
from advisor.selectors.assessment_workload import DataGap, DerivedWorkload

Progress = Callable[[float, str], None]

# vLLM's --quantization values -> the engine's weight schemes.
QUANTIZATION_SCHEMES = {
    "fp8": "fp8",
    "awq": "awq-int4",
    "awq_marlin": "awq-int4",
    "gptq": "gptq-int4",
    "gptq_marlin": "gptq-int4",
    "compressed-tensors": "int8",
    "gguf": "gguf-q4_k_m",
}
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "auto": "bf16", "bf16": "bf16"}
ENGINE_ARG_NAMES = (
    "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
    "gpu_memory_utilization", "max_model_len", "kv_cache_dtype", "block_size",
    "enable_prefix_caching",
)  # fmt: skip


def _args(raw: dict[str, Any]) -> dict[str, Any]:
    """Engine args with vLLM's CLI spelling (`max-num-seqs`) normalised to field names."""
    return {str(k).lstrip("-").replace("-", "_"): v for k, v in raw.items()}


def _weight_dtype(args: dict[str, Any]) -> tuple[str, str | None]:
    quantization = args.get("quantization")
    if isinstance(quantization, str) and quantization:
        scheme = QUANTIZATION_SCHEMES.get(quantization.lower())
        if scheme is None:
            raise ScenarioError("engine_args.quantization", f"unknown {quantization!r}")
        note = None
        if quantization.lower().startswith("gptq"):
            note = "GPTQ checkpoint assumed 4-bit (the engine args do not say)"
        return scheme, note
    dtype = args.get("dtype", "auto")
    if not isinstance(dtype, str) or dtype.lower() not in DTYPES:
        raise ScenarioError("engine_args.dtype", f"unknown {dtype!r}")
    return DTYPES[dtype.lower()], None


def engine_args_read(raw: dict[str, Any]) -> EngineArgs:
    """The engine's EngineArgs from a deployment's recorded vLLM args (either spelling)."""
    return _engine_args(_args(raw))


def _engine_args(args: dict[str, Any]) -> EngineArgs:
    given = {name: args[name] for name in ENGINE_ARG_NAMES if args.get(name) is not None}
    if args.get("no_enable_prefix_caching") is True:  # vLLM's --no-enable-prefix-caching
        given["enable_prefix_caching"] = False
    offload = args.get("kv_offloading_size")  # GiB; vLLM reports "None" when unset
    if isinstance(offload, int | float) and not isinstance(offload, bool):
        given["kv_offload_gib"] = float(offload)
    speculative = args.get("speculative_config")
    try:
        if isinstance(speculative, dict):
            given["speculative_config"] = SpeculativeSpec(
                method=speculative.get("method", ""),
                num_speculative_tokens=speculative.get("num_speculative_tokens", 0),
                model=speculative.get("model"),
                prompt_lookup_max=speculative.get("prompt_lookup_max"),
            )
        return EngineArgs(**given)
    except ScenarioError as exc:
        raise exc.at("engine_args") from None


def _spec_counters(engine_args: EngineArgs, totals: dict[str, int] | None) -> Any:
    """Measured acceptance when the deployment runs speculative decoding and vLLM counted it."""
    speculative = engine_args.speculative_config
    if speculative is None or totals is None:
        return None
    try:
        return SpecDecodeCounters(
            method=speculative.method,
            num_speculative_tokens=speculative.num_speculative_tokens,
            num_drafts=totals["drafts"],
            num_draft_tokens=totals["draft_tokens"],
            num_accepted_tokens=totals["accepted"],
        )
    except ScenarioError as exc:
        raise exc.at("spec_decode") from None


def _deployment_spec(
    deployment: DeploymentFleet, workload: DerivedWorkload, start: datetime
) -> DeploymentSpec:
    args = _args(deployment.engine_args)
    weight_dtype, _note = _weight_dtype(args)
    tp, _source = deployment.tensor_parallel()
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ScenarioError("engine_args.tensor_parallel_size", f"must be >= 1, got {tp!r}")
    # Replicas are what the assigned GPUs hold: that is what is paid for today.
    replicas = max(len(deployment.gpus) // tp, 1)
    slo = deployment.slo
    engine_args = _engine_args(args)
    sample = Workload(
        workload.sample_arrival_s,
        workload.prompt_tokens,
        workload.output_tokens,
        None,
        f"{deployment.served_name} requests",
        workload.prefix,
    )
    # Deployments with an unknown model or GPU kind were refused before (fleet problems).
    assert deployment.model is not None
    assert deployment.kind is not None
    return DeploymentSpec(
        name=deployment.served_name,
        model=deployment.model.name,
        model_path=deployment.model_id,
        hardware=deployment.kind,
        weight_dtype=weight_dtype,
        tensor_parallel=tp,
        replicas=replicas,
        engine_args=engine_args,
        spec_decode=_spec_counters(engine_args, workload.spec_decode),
        slo=SloSpec(
            ttft_p95_s=slo["ttft_p95_s"].value,
            tpot_p95_s=slo["tpot_p95_s"].value,
            max_quality_loss_points=slo["max_quality_loss_points"].value,
            defaulted=tuple(name for name, value in slo.items() if value.is_default),
            min_replicas=deployment.min_replicas,
        ),
        workload=WorkloadSpec(
            sample=sample,
            load=LoadShape(
                np.asarray(workload.rate_rps, dtype=np.float64), 60.0, start.isoformat()
            ),
            source=(
                f"{workload.rate_source}; sample: {workload.lengths_source}; "
                f"{workload.prefix_source}"
            ),
        ),
    )


def scenario_build(
    *, fleet: Fleet, workloads: list[DerivedWorkload], start: datetime, end: datetime, seed: int = 0
) -> tuple[Scenario | None, list[DataGap]]:
    """The engine's input for the deployments with enough data, and the ones it refused."""
    by_id = {d.id: d for d in fleet.deployments}
    specs: list[DeploymentSpec] = []
    gaps: list[DataGap] = []
    for workload in workloads:
        deployment = by_id[workload.deployment_id]
        try:
            specs.append(_deployment_spec(deployment, workload, start))
        except ScenarioError as exc:
            gaps.append(
                DataGap(
                    deployment.id,
                    deployment.served_name,
                    f"deployment {deployment.served_name}: {exc}",
                    (str(exc),),
                    {"engine_args": deployment.engine_args},
                )
            )
    if not specs:
        return None, gaps
    kinds = {spec.hardware for spec in specs}
    prices = {
        kind: PriceEntry(
            price.usd_per_gpu_hour,
            price.source + (f" (as of {price.as_of})" if price.as_of else ""),
            defaulted=not price.from_price_sheet,
        )
        for kind, price in fleet.prices.items()
        if kind in kinds
    }
    # the price sheet's other GPU kinds: where the planner may move a deployment
    for kind, price in fleet.offered.items():
        prices.setdefault(
            kind,
            PriceEntry(
                price.usd_per_gpu_hour,
                price.source + (f" (as of {price.as_of})" if price.as_of else ""),
            ),
        )
    profiles = tuple(
        calibration.profile
        for kind, calibration in fleet.calibrations.items()
        if kind in kinds and calibration.record_id is not None
    )
    # Models read from a deployment's stored config.json travel in the scenario, so the
    # engine (and a later what-if on the stored scenario) reads the same model.
    assessed = {spec.name for spec in specs}
    models = {
        d.model.name: d.model_config
        for d in fleet.deployments
        if d.served_name in assessed and d.model is not None and d.model_config is not None
    }
    scenario = Scenario(
        deployments=tuple(specs),
        models=models,
        prices=prices,
        profiles=profiles,
        options=Options(seed=seed),
        name=f"{fleet.cluster.name} {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC",
    )
    return scenario, gaps


def scenario_from_json(text: str) -> Scenario:
    return Scenario.from_json(text)


@dataclass(frozen=True)
class EngineOutcome:
    """What the engine answered, as JSON-ready dicts for the assessment row.

    `plan`: the `Plan` without its strategy results; `strategies`: those results by
    deployment then strategy; `baseline`: today's configuration as the engine simulates it,
    per deployment and for the fleet (`util_pct` is the busy fraction, what NVML reports).
    """

    engine_version: str
    baseline: dict[str, Any]
    strategies: dict[str, Any]
    plan: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {"baseline": self.baseline, "strategies": self.strategies, "plan": self.plan},
            sort_keys=True,
        )


def _projection(projection: Projection | None) -> dict[str, Any] | None:
    if projection is None:
        return None
    data = projection.to_dict()
    data["util_pct"] = projection.busy_fraction * 100.0
    return data


def outcome_from_plan(plan: Plan) -> EngineOutcome:
    whole = plan.to_dict()
    results = whole.pop("strategy_results")
    strategies: dict[str, dict[str, Any]] = {}
    for result in results:
        strategies.setdefault(result["deployment"], {})[result["strategy"]] = result
    baseline = {
        "fleet": _projection(plan.fleet_baseline),
        "deployments": {
            item.deployment: _projection(item.baseline)
            for item in plan.deployments
            if item.baseline is not None
        },
    }
    return EngineOutcome(plan.engine_version, baseline, strategies, whole)


def scenario_run(scenario: Scenario, *, progress: Progress | None) -> EngineOutcome:
    """Run every strategy and the planner on `scenario` (deterministic for a scenario)."""
    from advisor.engine.planner import assess

    if progress is not None:
        names = ", ".join(spec.name for spec in scenario.deployments)
        progress(0.0, f"simulating five strategies and planning for {names}")
    return outcome_from_plan(assess(scenario))
