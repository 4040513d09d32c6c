"""What-ifs: a stored assessment's scenario with some inputs changed, simulated again.

An assessment's `scenario` snapshot is the engine's whole input; a what-if changes only what
a user may want to try (per deployment: GPU kind, GPUs per replica, replicas, SLOs, vLLM's
prefix caching on or off, the router ("round_robin" or "prefix_aware"), host memory for KV
offload in GiB, the GPU kinds the planner may move it to; a price per GPU kind; which
strategies the planner may use, and whether it may move deployments to other GPU kinds at
all) and runs the same engine call as the
assessment (`scenario_run`), so the answer differs from the stored plan only by the changes.

`changes` is JSON-ready (stored as such by the caller):

    {"deployments": {"chat": {"hardware": "A100-80GB", "tensor_parallel": 2, "replicas": 3,
                              "slo": {"ttft_p95_s": 1.0, "tpot_p95_s": 0.05,
                                      "max_quality_loss_points": 0.5},
                              "enable_prefix_caching": false, "routing": "prefix_aware",
                              "kv_offload_gib": 64,
                              "gpu_kinds": {"pin": ["L40S", "L4"], "exclude": []}}},
     "prices": {"H100-SXM": 3.5},
     "strategies": ["batching", "quantization"],
     "hardware_moves": true}

`gpu_kinds` (`advisor.engine.scenario.GpuKindChoice`): `pin` lists the only kinds the planner
may move the deployment to, `exclude` kinds it must not use; excluding the deployment's own
kind makes the plan move it or answer that no allowed configuration is left. Either list
given replaces the stored one ([] clears it). `hardware_moves` false keeps every deployment on
its kind (the hardware lever off).

Every key is optional; a value equal to the stored one is not a change. Bad input raises
`WhatIfInputError` naming the field (`deployments.chat.hardware`, `prices.H100-SXM`, ...)
before anything runs. A GPU kind the deployment's model does not fit on is not bad input: the
engine answers it for that deployment ("does not fit"), as it would in an assessment, and the
what-if is infeasible there: that deployment keeps today's configuration, so the totals hold it
at the assessment's cost for it (`advisor.held`, status "infeasible"; re-priced when the
what-if changes its GPU kind's price) instead of dropping it and showing the others' savings as
the fleet's. Deployments the assessment held (below the data floor) stay held.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from advisor.engine.bounds import PRICE_USD_PER_GPU_HOUR, REPLICAS, SLO_BOUNDS, Bound
from advisor.engine.catalog import DEFAULT_CATALOG, CatalogError
from advisor.engine.context import PriceBook
from advisor.engine.routing import ROUTING_POLICIES
from advisor.engine.scenario import (
    MAX_KV_OFFLOAD_GIB,
    GpuKindChoice,
    PriceEntry,
    Scenario,
    ScenarioError,
    SloSpec,
)
from advisor.engine.strategies.registry import names as strategy_names
from advisor.held import held_entry, held_of, plan_hold
from advisor.models import Assessment
from advisor.services.assessment_engine import EngineOutcome, scenario_from_json, scenario_run

DEPLOYMENT_KEYS = frozenset(
    {
        "hardware",
        "tensor_parallel",
        "replicas",
        "slo",
        "enable_prefix_caching",
        "gpu_kinds",
        "routing",
        "kv_offload_gib",
    }
)
GPU_KIND_KEYS = ("pin", "exclude")
KV_OFFLOAD_GIB = Bound("kv_offload_gib", 0.0, MAX_KV_OFFLOAD_GIB, "GiB")
SLO_KEYS = ("ttft_p95_s", "tpot_p95_s", "max_quality_loss_points")
# A what-if keeps at least one replica (the bound's 0, scaled to zero, is for stored rows).
MIN_REPLICAS = 1
MAX_REPLICAS = int(REPLICAS.high)

Progress = Callable[[float, str], None]


class WhatIfInputError(ValueError):
    """Bad what-if input; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, eq=False)
class WhatIf:
    """The changed scenario and the changes in words (`"chat: GPU H100-SXM -> A100-80GB"`)."""

    scenario: Scenario
    described: tuple[str, ...]


@dataclass(frozen=True)
class WhatIfOutcome:
    scenario_digest: str
    described: tuple[str, ...]
    outcome: EngineOutcome  # its plan holds the infeasible deployments at today's cost

    def fields(self) -> dict[str, Any]:
        """The answer as JSON-safe dicts named like an assessment's fields."""
        return {
            "engine_version": self.outcome.engine_version,
            "baseline": json_safe(self.outcome.baseline),
            "strategies": json_safe(self.outcome.strategies),
            "plan": json_safe(self.outcome.plan),
        }


def json_safe(value: Any) -> Any:
    """Plain JSON types (numpy scalars to floats, NaN/inf to None), as jsonb columns need."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | str | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    number = float(value)  # numpy scalars
    return number if math.isfinite(number) else None


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WhatIfInputError(field, "expected an object")
    return value


def _number(value: Any, field: str, bound: Bound) -> float:
    # Strings are not numbers here, though `Bound` would read "2" as one (a form's Decimal).
    if isinstance(value, bool) or not isinstance(value, int | float) or not bound.contains(value):
        raise WhatIfInputError(field, f"expected a number {bound.text}, got {value!r}")
    return float(value)


def _whole(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WhatIfInputError(field, f"expected a whole number in [{low}, {high}], got {value!r}")
    return value


def _hardware(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WhatIfInputError(field, "expected a GPU kind from the catalog")
    try:
        return DEFAULT_CATALOG.gpu(value).name
    except CatalogError as exc:
        raise WhatIfInputError(field, str(exc).removeprefix("gpu: ")) from None


def _slo(current: SloSpec, raw: Any, field: str, said: list[str], name: str) -> SloSpec:
    data = _mapping(raw, field)
    unknown = sorted(set(data) - set(SLO_KEYS))
    if unknown:
        raise WhatIfInputError(f"{field}.{unknown[0]}", "unknown field")
    values = {key: getattr(current, key) for key in SLO_KEYS}
    defaulted = set(current.defaulted)
    for key in SLO_KEYS:
        if key not in data or data[key] is None:
            continue
        new = _number(data[key], f"{field}.{key}", SLO_BOUNDS[key])
        if new != values[key]:
            said.append(f"{name}: SLO {key} {values[key]:g} -> {new:g}")
            values[key] = new
            defaulted.discard(key)
    return SloSpec(**values, defaulted=tuple(k for k in SLO_KEYS if k in defaulted))


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise WhatIfInputError(field, f"expected true or false, got {value!r}")
    return value


def _gpu_kinds(
    current: GpuKindChoice, raw: Any, field: str, said: list[str], name: str
) -> GpuKindChoice:
    data = _mapping(raw, field)
    unknown = sorted(set(data) - set(GPU_KIND_KEYS))
    if unknown:
        raise WhatIfInputError(f"{field}.{unknown[0]}", "unknown field")
    lists = {key: getattr(current, key) for key in GPU_KIND_KEYS}
    for key in GPU_KIND_KEYS:
        if data.get(key) is None:
            continue
        given = data[key]
        if not isinstance(given, list | tuple):
            raise WhatIfInputError(f"{field}.{key}", f"expected a list of GPU kinds, got {given!r}")
        kinds = tuple(_hardware(kind, f"{field}.{key}[{i}]") for i, kind in enumerate(given))
        if kinds != lists[key]:
            words = ", ".join(kinds) or "none"
            said.append(f"{name}: GPU kinds {'pinned to' if key == 'pin' else 'excluded'} {words}")
            lists[key] = kinds
    try:
        return GpuKindChoice(**lists)
    except ScenarioError as exc:
        raise WhatIfInputError(f"{field}.{exc.field}", exc.message) from None


def whatif_scenario(*, scenario: Scenario, changes: Any) -> WhatIf:
    """`scenario` with `changes` applied (module docstring); errors name the field."""
    data = _mapping(changes, "changes")
    unknown = sorted(set(data) - {"deployments", "prices", "strategies", "hardware_moves"})
    if unknown:
        raise WhatIfInputError(unknown[0], "unknown field")
    said: list[str] = []
    by_name = {d.name: d for d in scenario.deployments}
    edits = _mapping(data.get("deployments"), "deployments")
    deployments = []
    for name, deployment in by_name.items():
        raw = _mapping(edits.get(name), f"deployments.{name}")
        field = f"deployments.{name}"
        extra = sorted(set(raw) - DEPLOYMENT_KEYS)
        if extra:
            raise WhatIfInputError(f"{field}.{extra[0]}", "unknown field")
        updated = deployment
        if raw.get("hardware") is not None:
            kind = _hardware(raw["hardware"], f"{field}.hardware")
            if kind != DEFAULT_CATALOG.gpu(deployment.hardware).name:
                said.append(f"{name}: GPU {deployment.hardware} -> {kind}")
                updated = replace(updated, hardware=kind)
        if raw.get("tensor_parallel") is not None:
            tp = _whole(raw["tensor_parallel"], f"{field}.tensor_parallel", low=1, high=16)
            if tp != deployment.tensor_parallel:
                said.append(f"{name}: GPUs per replica {deployment.tensor_parallel} -> {tp}")
                updated = replace(updated, tensor_parallel=tp)
        if raw.get("replicas") is not None:
            count = _whole(
                raw["replicas"], f"{field}.replicas", low=MIN_REPLICAS, high=MAX_REPLICAS
            )
            if count != deployment.replicas:
                said.append(f"{name}: replicas today {deployment.replicas} -> {count}")
                updated = replace(updated, replicas=count)
        if raw.get("slo") is not None:
            slo = _slo(updated.slo, raw["slo"], f"{field}.slo", said, name)
            updated = replace(updated, slo=slo)
        if raw.get("enable_prefix_caching") is not None:
            caching = _bool(raw["enable_prefix_caching"], f"{field}.enable_prefix_caching")
            if caching != updated.engine_args.enable_prefix_caching:
                was, now = ("off", "on") if caching else ("on", "off")
                said.append(f"{name}: prefix caching {was} -> {now}")
                args = replace(updated.engine_args, enable_prefix_caching=caching)
                updated = replace(updated, engine_args=args)
        if raw.get("gpu_kinds") is not None:
            kinds = _gpu_kinds(
                updated.gpu_kinds, raw["gpu_kinds"], f"{field}.gpu_kinds", said, name
            )
            updated = replace(updated, gpu_kinds=kinds)
        if raw.get("routing") is not None:
            routing = raw["routing"]
            if routing not in ROUTING_POLICIES:
                raise WhatIfInputError(
                    f"{field}.routing", f"expected one of {list(ROUTING_POLICIES)}, got {routing!r}"
                )
            if routing != updated.routing:
                said.append(f"{name}: routing {updated.routing} -> {routing}")
                updated = replace(updated, routing=routing)
        if raw.get("kv_offload_gib") is not None:
            gib = _number(raw["kv_offload_gib"], f"{field}.kv_offload_gib", KV_OFFLOAD_GIB)
            if gib != updated.engine_args.kv_offload_gib:
                before_gib = updated.engine_args.kv_offload_gib
                said.append(f"{name}: KV offload to host memory {before_gib:g} -> {gib:g} GiB")
                args = replace(updated.engine_args, kv_offload_gib=gib)
                updated = replace(updated, engine_args=args)
        deployments.append(updated)
    missing = sorted(set(edits) - set(by_name))
    if missing:
        raise WhatIfInputError(
            f"deployments.{missing[0]}", f"not in this assessment (it has {', '.join(by_name)})"
        )

    prices = dict(scenario.prices)
    for kind_given, raw_price in _mapping(data.get("prices"), "prices").items():
        kind = _hardware(kind_given, f"prices.{kind_given}")
        if raw_price is None:
            continue
        value = _number(raw_price, f"prices.{kind_given}", PRICE_USD_PER_GPU_HOUR)
        before = prices.get(kind)
        old = before.usd_per_gpu_hour if before else DEFAULT_CATALOG.gpu(kind).price_usd_per_hour
        if value != old:
            source = "what-if" + (f" (was ${old:g}: {before.source})" if before else "")
            # the row's count limit and other prices stay; the what-if price is the user's own
            prices[kind] = (
                replace(before, usd_per_gpu_hour=value, source=source[:500], defaulted=False)
                if before
                else PriceEntry(value, source[:500])
            )
            said.append(f"price of {kind} ${old:g} -> ${value:g} per GPU-hour")

    options = scenario.options
    if data.get("strategies") is not None:
        chosen = data["strategies"]
        known = strategy_names()
        if not isinstance(chosen, list | tuple):
            raise WhatIfInputError("strategies", "expected a list of strategy names")
        for index, item in enumerate(chosen):
            if item not in known:
                raise WhatIfInputError(
                    f"strategies[{index}]", f"unknown {item!r}; known: {list(known)}"
                )
        picked = tuple(name for name in known if name in chosen)  # the registry's order
        if picked != options.strategy_names:
            off = [name for name in options.strategy_names if name not in picked]
            on = [name for name in picked if name not in options.strategy_names]
            words = [f"without {', '.join(off)}"] if off else []
            words += [f"with {', '.join(on)}"] if on else []
            said.append("strategies: " + "; ".join(words))
            options = replace(options, strategies=picked)
    if data.get("hardware_moves") is not None:
        moves = _bool(data["hardware_moves"], "hardware_moves")
        if moves != options.hardware_moves:
            said.append(f"moves to other GPU kinds {'on' if moves else 'off'}")
            options = replace(options, hardware_moves=moves)
    try:
        changed = replace(
            scenario,
            deployments=tuple(deployments),
            prices=prices,
            options=options,
            name=f"{scenario.name} (what-if)",
        )
    except ScenarioError as exc:
        raise WhatIfInputError(exc.field or "changes", exc.message) from None
    return WhatIf(changed, tuple(said))


def whatif_simulate(
    *, assessment: Assessment, changes: Any, progress: Progress | None = None
) -> WhatIfOutcome:
    """Apply `changes` to the assessment's stored scenario and run the engine on it."""
    if not assessment.scenario:
        raise WhatIfInputError("assessment", f"assessment #{assessment.pk} stored no scenario")
    original = scenario_from_json(assessment.scenario)
    whatif = whatif_scenario(scenario=original, changes=changes)
    outcome = scenario_run(whatif.scenario, progress=progress)
    held = whatif_held(
        assessment_plan=assessment.plan or {}, before=original, after=whatif.scenario,
        plan=outcome.plan,
    )  # fmt: skip
    outcome = replace(outcome, plan=plan_hold(outcome.plan, held))
    return WhatIfOutcome(whatif.scenario.digest(), whatif.described, outcome)


def whatif_held(
    *, assessment_plan: dict[str, Any], before: Scenario, after: Scenario, plan: dict[str, Any]
) -> list[dict[str, Any]]:
    """What the what-if's totals hold at today's cost: the assessment's held deployments, and
    each one the engine could not resolve under the changes (its change does not fit), at the
    assessment's simulated cost for it; both at the what-if's price for their GPU kind."""
    old_prices = PriceBook(dict(before.prices), DEFAULT_CATALOG)
    new_prices = PriceBook(dict(after.prices), DEFAULT_CATALOG)

    def price(kind: str, usd_per_gpu_hour: float) -> float:
        if not _known(kind):
            return usd_per_gpu_hour
        hardware = DEFAULT_CATALOG.gpu(kind)
        old, new = old_prices.usd_per_gpu_hour(hardware), new_prices.usd_per_gpu_hour(hardware)
        return usd_per_gpu_hour * new / old if old > 0 else usd_per_gpu_hour

    hours = after.options.hours_per_month
    held = [
        held_entry(
            deployment=entry["deployment"],
            status=entry["status"],
            reason=entry["reason"],
            hardware=entry["hardware"],
            gpus=float(entry["gpus"]),
            usd_per_gpu_hour=price(entry["hardware"], float(entry["usd_per_gpu_hour"])),
            hours_per_month=hours,
        )
        for entry in held_of(assessment_plan)
    ]
    today = {
        item["deployment"]: item.get("baseline")
        for item in assessment_plan.get("deployments") or ()
        if isinstance(item.get("baseline"), dict)
    }
    specs = {d.name: d for d in before.deployments}
    for item in plan.get("deployments") or ():
        name = item.get("deployment")
        baseline, spec = today.get(name), specs.get(name)
        if item.get("status") != "error" or baseline is None or spec is None:
            continue
        gpus = baseline.get("gpus")
        usd_hour = baseline.get("usd_per_hour")
        if not isinstance(gpus, int | float) or not isinstance(usd_hour, int | float) or not gpus:
            continue
        kind = DEFAULT_CATALOG.gpu(spec.hardware).name if _known(spec.hardware) else spec.hardware
        held.append(
            held_entry(
                deployment=name,
                status="infeasible",
                reason=f"the change does not fit ({item.get('message', '')})",
                hardware=kind,
                gpus=float(gpus),
                usd_per_gpu_hour=price(kind, float(usd_hour) / float(gpus)),
                hours_per_month=hours,
            )
        )
    return held


def whatif_choices(*, assessment: Assessment) -> dict[str, Any]:
    """What a what-if form offers: each deployment's current values (routing and KV offload
    included), prices, the routing policies, strategies."""
    scenario = scenario_from_json(assessment.scenario)
    return {
        "deployments": [
            {
                "name": d.name,
                "model": d.model,
                "hardware": DEFAULT_CATALOG.gpu(d.hardware).name
                if _known(d.hardware)
                else d.hardware,
                "tensor_parallel": d.tensor_parallel,
                "replicas": d.replicas,
                "slo": {key: getattr(d.slo, key) for key in SLO_KEYS},
                "slo_defaulted": list(d.slo.defaulted),
                "enable_prefix_caching": d.engine_args.enable_prefix_caching,
                "routing": d.routing,
                "kv_offload_gib": d.engine_args.kv_offload_gib,
                "gpu_kinds": {key: list(getattr(d.gpu_kinds, key)) for key in GPU_KIND_KEYS},
            }
            for d in scenario.deployments
        ],
        "prices": {
            kind: {"usd_per_gpu_hour": entry.usd_per_gpu_hour, "source": entry.source}
            for kind, entry in scenario.prices.items()
        },
        "gpu_kinds": [
            {
                "name": gpu.name,
                "usd_per_gpu_hour": gpu.price_usd_per_hour,
                "memory_gib": gpu.memory_bytes / 2**30,
            }
            for gpu in DEFAULT_CATALOG.gpus
            if gpu.kind == "gpu"
        ],
        "routing_policies": list(ROUTING_POLICIES),
        "strategies": list(strategy_names()),
        "enabled": list(scenario.options.strategy_names),
        "hardware_moves": scenario.options.hardware_moves,
    }


def _known(kind: str) -> bool:
    try:
        DEFAULT_CATALOG.gpu(kind)
    except CatalogError:
        return False
    return True


def whatif_problems(*, scenario: Scenario, changes: Any) -> list[WhatIfInputError]:
    """Every problem of `changes` at once, where `whatif_scenario` stops at the first: each
    changed value is checked alone, then (when each is fine alone) all of them together, for
    what only a combination breaks. Empty when `whatif_scenario` accepts `changes`."""
    problems = []
    for path, value in _leaves(changes, ()):
        single: Any = value
        for key in reversed(path):
            single = {key: single}
        try:
            whatif_scenario(scenario=scenario, changes=single)
        except WhatIfInputError as exc:
            problems.append(exc)
    if problems:
        return problems
    try:
        whatif_scenario(scenario=scenario, changes=changes)
    except WhatIfInputError as exc:
        return [exc]
    return []


def _leaves(value: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """(keys, value) of each non-object value in nested objects (a list is one value)."""
    if not isinstance(value, Mapping) or not value:
        return [(path, value)] if path else []
    return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, str(key)))]
