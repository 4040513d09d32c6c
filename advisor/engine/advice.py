"""What the strategies and the planner return: projections, config changes, the plan.

All types are frozen dataclasses that round-trip through JSON: `x.to_dict()` gives JSON
types (non-finite floats as "Infinity"/"NaN" strings), `Type.from_dict(d)` rebuilds it, and
`to_json()` / `from_json()` wrap both. Nothing here is computed: the numbers come from the
strategies (`advisor.engine.strategies`) and the planner (`advisor.engine.planner`).

Units are in the names. Monthly figures use the scenario's `hours_per_month`. "Tokens" in
per-token figures are output (generated) tokens, as `vllm bench serve` counts throughput.

- `Projection`: one deployment (or the fleet) under one configuration over the scenario's
  load: GPUs (mean and peak), utilization (served load over what the provisioned replicas
  could serve at saturation), busy fraction (time a kernel runs: what NVML reports), TTFT and
  TPOT p50/p95 over all requests, SLO attainment, USD per hour / month / 1M output tokens,
  energy per output token and per month (kWh, the GPUs' board power whether busy or idle),
  quality change versus BF16.
- `ConfigChange`: vLLM CLI arguments to set (`{"--max-num-seqs": 512}`; True/False for
  boolean flags), a different model path (quantized checkpoints), replicas / TP, another GPU
  kind (`hardware`), and manifests (HPA `autoscaling/v2`, KEDA `ScaledObject`, the
  Deployment patch for a GPU kind's nodes) as YAML text.
- `StrategyResult`: one strategy on one deployment: status, one-line summary, baseline,
  reference and projected `Projection`, the config change, every variant considered
  (`Alternative`), assumptions, risks, and strategy-specific `details`. The reference is
  today's configuration right-sized: what the strategy adds is reference minus projected
  (right-sizing is no strategy's own saving); "recommended" means it adds a saving, or meets
  the SLOs where no size of today's configuration does.
- `Plan`: per deployment baseline vs plan (`DeploymentPlan`, with its Pareto set and, when no
  configuration meets the SLOs, the message and the closest configuration), the fleet totals,
  every strategy result, the "strategy combination -> GPU utilization, cost savings" table,
  sensitivity, assumptions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from advisor.engine.jsonable import JsonValue, from_plain, to_plain

ENGINE_VERSION = "engine-4.0"

ArgValue = str | int | float | bool
StrategyStatus = Literal["recommended", "not_recommended", "not_applicable", "infeasible"]
PlanStatus = Literal["ok", "no_feasible_configuration", "error"]

T = TypeVar("T", bound="_Jsonable")


class _Jsonable:
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_plain(self)
        return out

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        return from_plain(cls, dict(data))

    @classmethod
    def from_json(cls: type[T], text: str | bytes) -> T:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Projection(_Jsonable):
    """A deployment (or the fleet) under one configuration over the scenario's load."""

    gpus: float  # mean GPUs provisioned (fractional when autoscaled or shared)
    gpus_peak: float  # most GPUs at once
    utilization: float  # served load / saturation throughput of what is provisioned
    busy_fraction: float  # share of time a kernel runs (NVML "GPU utilization")
    ttft_p50_s: float
    ttft_p95_s: float
    tpot_p50_s: float
    tpot_p95_s: float
    slo_attainment: float  # requests meeting both the TTFT and the TPOT target
    usd_per_hour: float
    usd_per_month: float
    usd_per_1m_output_tokens: float
    energy_j_per_output_token: float
    requests_per_s: float  # mean served
    output_tokens_per_s: float  # mean served
    quality_delta_points: float = 0.0  # versus BF16, negative = worse
    meets_slo: bool = True  # TTFT p95, TPOT p95 and the quality floor all met
    # board energy of the provisioned GPUs per month (idle ones included); NaN when unknown
    energy_kwh_per_month: float = math.nan


@dataclass(frozen=True)
class ConfigChange(_Jsonable):
    """What to change on the deployment; empty when nothing changes."""

    engine_args: Mapping[str, ArgValue] = field(default_factory=dict)
    model_path: str | None = None  # a different checkpoint (e.g. quantized)
    replicas: int | None = None
    tensor_parallel: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    manifests: Mapping[str, str] = field(default_factory=dict)  # file name -> YAML text
    notes: tuple[str, ...] = ()
    # another GPU kind: not applied by a node controller; `manifests` holds the Deployment
    # patch (node selector, GPU resources) and `notes` the nodes it needs
    hardware: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.hardware
            or self.engine_args
            or self.model_path
            or self.replicas is not None
            or self.tensor_parallel is not None
            or self.env
            or self.manifests
        )

    def cli_args(self) -> list[str]:
        """The engine args as a vLLM command line (`--no-x` for False boolean flags)."""
        out: list[str] = []
        for flag, value in self.engine_args.items():
            if value is True:
                out.append(flag)
            elif value is False:
                out.append("--no-" + flag.removeprefix("--"))
            else:
                out.extend((flag, str(value)))
        return out


@dataclass(frozen=True)
class Alternative(_Jsonable):
    """One configuration a strategy or the planner evaluated, feasible or not, and why."""

    label: str
    config: Mapping[str, JsonValue]
    projection: Projection | None
    feasible: bool
    reason: str = ""


@dataclass(frozen=True)
class StrategyResult(_Jsonable):
    """One strategy evaluated on one deployment."""

    strategy: str
    deployment: str
    status: StrategyStatus
    summary: str
    baseline: Projection
    projected: Projection
    config_change: ConfigChange
    alternatives: tuple[Alternative, ...] = ()
    assumptions: tuple[str, ...] = ()
    risks: tuple[str, ...] = ()
    details: Mapping[str, JsonValue] = field(default_factory=dict)
    # What the strategy is applied to: today's configuration right-sized (today's own where
    # no size of it meets the SLOs). None in results stored before it was kept: the baseline.
    reference: Projection | None = None

    @property
    def savings_usd_per_month(self) -> float:
        """Today's cost minus the projection's: right-sizing included."""
        return self.baseline.usd_per_month - self.projected.usd_per_month

    @property
    def savings_fraction(self) -> float:
        base = self.baseline.usd_per_month
        return self.savings_usd_per_month / base if base > 0 else 0.0

    @property
    def added_usd_per_month(self) -> float:
        """What the strategy itself saves: its reference's cost minus the projection's."""
        return (self.reference or self.baseline).usd_per_month - self.projected.usd_per_month

    @property
    def added_fraction(self) -> float:
        base = (self.reference or self.baseline).usd_per_month
        return self.added_usd_per_month / base if base > 0 else 0.0


@dataclass(frozen=True)
class ReusePoint(_Jsonable):
    """The plan's monthly cost for a deployment at an assumed prefix reuse share."""

    reuse_share: float  # the share of prompt tokens assumed reused (0.3: 30%)
    usd_per_month: float | None  # None: the chosen configuration cannot serve it
    meets_slo: bool


@dataclass(frozen=True)
class DeploymentPlan(_Jsonable):
    """Baseline versus the chosen configuration for one deployment."""

    deployment: str
    status: PlanStatus
    message: str  # e.g. "no configuration meets TTFT p95 <= 50 ms; closest: ..."
    baseline: Projection | None
    plan: Projection | None
    strategies: tuple[str, ...]  # the strategies the chosen configuration uses
    config: Mapping[str, JsonValue]  # the chosen configuration, described
    config_change: ConfigChange
    closest: Alternative | None = None  # when nothing meets the SLOs
    pareto: tuple[Alternative, ...] = ()  # cost vs TTFT/TPOT p95 vs quality, non-dominated
    # today's configuration replaying the whole request sample at its own arrival times
    # (one replica's share), to compare with what the fleet measures
    replay: Mapping[str, JsonValue] = field(default_factory=dict)
    # what the plan had to respect: the SLOs and the redundancy rule (`min_replicas`, whether
    # it was defaulted, in words, and whether it kept more replicas than the load needs)
    constraints: Mapping[str, JsonValue] = field(default_factory=dict)
    # a move to another GPU kind in words ("chat: H100-SXM x2 -> L40S x3, -$4,321/month,
    # TTFT p95 85 ms -> 120 ms"); empty when the plan keeps today's kind
    move: str = ""
    # prefix reuse unknown (no block hashes in the sample): the plan at assumed reuse shares
    # (`advisor.engine.plan_tables.prefix_reuse`); empty when the hashes are known
    prefix_reuse: tuple[ReusePoint, ...] = ()


@dataclass(frozen=True)
class CombinationRow(_Jsonable):
    """A row of "strategy combination -> GPU utilization, cost savings" for this fleet."""

    strategies: tuple[str, ...]
    gpus: float
    utilization: float
    usd_per_month: float
    savings_usd_per_month: float
    savings_fraction: float
    slo_attainment: float
    meets_slo: bool  # every assessed deployment meets its SLOs


@dataclass(frozen=True)
class SensitivityRow(_Jsonable):
    """How much the plan's monthly cost and savings move when one input moves."""

    input: str
    low_label: str
    high_label: str
    plan_usd_per_month_low: float
    plan_usd_per_month_high: float
    savings_fraction_low: float
    savings_fraction_high: float
    swing_usd_per_month: float  # |high - low| of the plan's cost
    meets_slo_low: bool = True  # every deployment still meets its SLOs at the low value
    meets_slo_high: bool = True
    note: str = ""  # which deployment fails, and why, at either end


@dataclass(frozen=True)
class Plan(_Jsonable):
    """The assessment's answer for a scenario (see the module docstring)."""

    scenario: str
    scenario_digest: str
    engine_version: str
    deployments: tuple[DeploymentPlan, ...]
    fleet_baseline: Projection
    fleet_plan: Projection
    savings_usd_per_month: float
    savings_fraction: float
    strategy_results: tuple[StrategyResult, ...]
    combinations: tuple[CombinationRow, ...]
    sensitivity: tuple[SensitivityRow, ...]
    sharing: Mapping[str, JsonValue] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()  # infeasible or unassessable deployments, in words

    def deployment(self, name: str) -> DeploymentPlan:
        for item in self.deployments:
            if item.deployment == name:
                return item
        raise KeyError(name)

    def result(self, deployment: str, strategy: str) -> StrategyResult:
        for item in self.strategy_results:
            if item.deployment == deployment and item.strategy == strategy:
                return item
        raise KeyError((deployment, strategy))
