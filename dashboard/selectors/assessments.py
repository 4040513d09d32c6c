"""An assessment (or a what-if) as its page shows it: rows and steps read from the stored JSON.

Nothing here is computed anew: the numbers are the engine's (the assessment's `plan`,
`baseline`, `strategies`) and the telemetry's (`measured`, `gap`), rearranged for tables and
figures. Three arrangements deserve a word:

- The waterfall goes from today's simulated cost to the plan's in the order the planner
  applies the strategies (precision, scheduler, speculative decoding, provisioning, then
  sharing: `advisor.engine.planner`). Strategies interact, so a strategy's step is what it
  saves *given the ones before it*: each step is the difference between two rows of the
  engine's combination table (the cheapest plan with the strategies so far, and with one
  more), not the strategy's saving alone. The first step is right-sizing today's
  configuration (the table's empty combination).
- vLLM args diff: today's engine args as stored on the deployment, beside the plan's
  `config_change` (CLI flags), one line per flag that is kept, changed, added or removed
  (`dashboard.selectors.config_diff`, shared with the rollout page).
- Confidence: per deployment, the lowest of three caps with every reason, the one that capped
  it first (`advisor.evidence`): the share of the window's minutes whose rate was assumed,
  the measured-vs-simulated utilization gap, and its GPU kind's calibration fit error. Per GPU
  kind, the calibration profile's fit error and where it came from, and the plan's cost when
  the calibration's efficiencies move (the engine's sensitivity rows).
- Held deployments (`advisor.held`): below the data floor ("not enough data") or a what-if
  change that does not fit ("infeasible"): not priced, in the totals at today's cost; each
  has its row, and the what-if's headline names the infeasible ones.
- Cost and energy: per deployment and for the fleet, $/month, kWh/month and J per output
  token today (simulated) and in the plan, from the engine's projections (board power idle
  for every provisioned GPU plus (max - idle) x its busy share: `advisor.engine.energy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from advisor.evidence import (
    NOT_ENOUGH_DATA,
    Confidence,
    Coverage,
    calibration_level,
    confidence_of,
    floor_text,
    thresholds,
)
from advisor.models import Assessment, AssessmentStatus
from dashboard.formatting import prefix_reuse_line
from dashboard.selectors.config_diff import ArgLine, args_diff

# The planner's order (advisor.engine.planner: precision, scheduler, speculative, provisioning,
# then sharing across deployments).
PLANNER_ORDER = (
    "quantization",
    "batching",
    "speculative",
    "autoscaling",
    "sharing",
    "hardware",
)
STRATEGY_LABELS = {
    "batching": "continuous batching",
    "quantization": "quantization",
    "autoscaling": "elastic scaling",
    "speculative": "speculative decoding",
    "sharing": "multi-model GPU sharing",
    "hardware": "another GPU kind",
}


def num(value: Any) -> float | None:
    """A stored number: floats as they are, the engine's "Infinity"/"NaN" strings as floats."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def finite(value: Any) -> float | None:
    number = num(value)
    return number if number is not None and math.isfinite(number) else None


def strategy_label(name: str) -> str:
    return STRATEGY_LABELS.get(name, name)


def combination_label(strategies: list[str] | tuple[str, ...]) -> str:
    if not strategies:
        return "none (right-size today's configuration)"
    return " + ".join(strategy_label(s) for s in strategies)


@dataclass(frozen=True)
class WaterfallStep:
    label: str
    usd_per_month: float  # the total for "absolute"/"total", the change for "relative"
    measure: str  # "absolute" | "relative" | "total"
    note: str = ""


@dataclass(frozen=True)
class StrategyCell:
    """One strategy on one deployment: its verdict and what it alone saves.

    The saving is over what the strategy is applied to (the engine's `reference`: today's
    configuration right-sized), so right-sizing is not credited to every strategy; None when
    the strategy does not apply or nothing meets the SLOs.
    """

    strategy: str
    status: str
    summary: str
    savings_usd_per_month: float | None
    savings_fraction: float | None
    projected: dict[str, Any]
    assumptions: tuple[str, ...]
    risks: tuple[str, ...]


@dataclass(frozen=True)
class DeploymentView:
    name: str
    status: str  # ok | no_feasible_configuration | error | not assessed
    message: str
    measured: dict[str, Any] | None
    baseline: dict[str, Any] | None
    plan: dict[str, Any] | None
    gap: dict[str, Any] | None
    strategies_used: tuple[str, ...]
    slo: dict[str, Any]
    args: tuple[ArgLine, ...]
    model_path: tuple[str | None, str | None] | None
    replicas: tuple[int | None, int | None] | None
    manifests: dict[str, str]
    notes: tuple[str, ...]
    strategy_cells: tuple[StrategyCell, ...]
    workload: dict[str, Any] | None
    inputs: dict[str, Any] = field(default_factory=dict)
    held: dict[str, Any] | None = None  # not priced: in the totals at today's cost
    confidence: Confidence | None = None  # None: not judged (what-ifs)
    # What the plan respected (the engine's `DeploymentPlan.constraints`): SLOs, redundancy.
    constraints: dict[str, Any] = field(default_factory=dict)
    move: str = ""  # a move to another GPU kind in words (the engine's `DeploymentPlan.move`)
    plan_config: dict[str, Any] = field(default_factory=dict)
    # reuse unknown: the plan at 0/30/60% prefix reuse in words (`prefix_reuse_line`)
    prefix_reuse: str = ""

    @property
    def savings_usd_per_month(self) -> float | None:
        if self.held is not None:
            return None
        if self.baseline is None or self.plan is None or self.status != "ok":
            return None
        before, after = (
            finite(self.baseline.get("usd_per_month")),
            finite(self.plan.get("usd_per_month")),
        )
        return None if before is None or after is None else before - after


@dataclass(frozen=True)
class CalibrationView:
    kind: str
    deployments: tuple[str, ...]
    source: str
    fit_median_ape: float | None
    fitted_here: bool

    @property
    def level(self) -> str:
        return calibration_level(self.fit_median_ape)


@dataclass(frozen=True)
class CostEnergyRow:
    """$ and energy of one deployment (or the fleet), today (simulated) and in the plan."""

    name: str
    usd_per_month_today: float | None
    usd_per_month_plan: float | None
    kwh_per_month_today: float | None
    kwh_per_month_plan: float | None
    j_per_token_today: float | None
    j_per_token_plan: float | None


def energy_of(projection: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(kWh a month, J per output token) of a stored projection; None where unknown.

    A projection stored before the engine kept kWh a month gets it from J per token x
    tokens per second x the hours its month has (its USD a month over its USD an hour).
    """
    if not projection:
        return None, None
    joules = finite(projection.get("energy_j_per_output_token"))
    kwh = finite(projection.get("energy_kwh_per_month"))
    if kwh is None and joules is not None:
        tokens = finite(projection.get("output_tokens_per_s"))
        usd_month = finite(projection.get("usd_per_month"))
        usd_hour = finite(projection.get("usd_per_hour"))
        if tokens is not None and usd_month is not None and usd_hour:
            kwh = joules * tokens * (usd_month / usd_hour) / 1000.0
    return kwh, joules


def cost_energy_row(
    name: str, today: dict[str, Any] | None, plan: dict[str, Any] | None
) -> CostEnergyRow:
    kwh_today, j_today = energy_of(today)
    kwh_plan, j_plan = energy_of(plan)
    return CostEnergyRow(
        name=name,
        usd_per_month_today=finite((today or {}).get("usd_per_month")),
        usd_per_month_plan=finite((plan or {}).get("usd_per_month")),
        kwh_per_month_today=kwh_today,
        kwh_per_month_plan=kwh_plan,
        j_per_token_today=j_today,
        j_per_token_plan=j_plan,
    )


@dataclass(frozen=True)
class PlanView:
    """What an assessment's or a what-if's page shows (see the module docstring)."""

    fleet_baseline: dict[str, Any]
    fleet_plan: dict[str, Any]
    savings_usd_per_month: float | None
    savings_fraction: float | None
    deployments: tuple[DeploymentView, ...]
    combinations: tuple[dict[str, Any], ...]
    waterfall: tuple[WaterfallStep, ...]
    sensitivity: tuple[dict[str, Any], ...]
    assumptions: tuple[str, ...]
    messages: tuple[str, ...]
    sharing: tuple[dict[str, Any], ...]
    strategies: tuple[str, ...]  # enabled, in the planner's order
    held: tuple[dict[str, Any], ...] = ()
    data_floor: str = field(default_factory=floor_text)
    thresholds: dict[str, float] = field(default_factory=thresholds)

    @property
    def assessed(self) -> tuple[DeploymentView, ...]:
        return tuple(d for d in self.deployments if d.baseline is not None)

    @property
    def rows(self) -> tuple[DeploymentView, ...]:
        """Every deployment the totals count: the simulated ones and the held ones."""
        return tuple(d for d in self.deployments if d.baseline is not None or d.held is not None)

    @property
    def moves(self) -> tuple[str, ...]:
        """The plan's moves to another GPU kind, in words (one line per deployment)."""
        return tuple(d.move for d in self.assessed if d.move and d.status == "ok")

    @property
    def prefix_reuse_lines(self) -> tuple[str, ...]:
        """Per deployment whose reuse is unknown: "chat: prefix reuse unknown: plan ..."."""
        return tuple(
            f"{d.name}: {d.prefix_reuse}"
            for d in self.assessed
            if d.prefix_reuse and d.status == "ok"
        )

    @property
    def infeasible(self) -> tuple[dict[str, Any], ...]:
        return tuple(h for h in self.held if h.get("status") == "infeasible")

    @property
    def not_priced(self) -> tuple[dict[str, Any], ...]:
        return tuple(h for h in self.held if h.get("status") == "not_enough_data")

    @property
    def held_usd_per_month(self) -> float:
        return sum(finite(h.get("usd_per_month")) or 0.0 for h in self.held)

    @property
    def lowest_confidence(self) -> tuple[DeploymentView, ...]:
        """The judged deployments, lowest confidence first (the headline's order)."""
        rank = {NOT_ENOUGH_DATA: 0, "low": 1, "medium": 2, "high": 3}
        judged = [(d, d.confidence) for d in self.deployments if d.confidence is not None]
        return tuple(d for d, c in sorted(judged, key=lambda pair: rank.get(pair[1].level, 0)))

    @property
    def cost_energy(self) -> tuple[CostEnergyRow, ...]:
        """Each assessed deployment's $ and energy today and in the plan, then the fleet's."""
        rows = [
            cost_energy_row(d.name, d.baseline, d.plan if d.status == "ok" else None)
            for d in self.assessed
        ]
        if rows:
            rows.append(cost_energy_row("fleet", self.fleet_baseline, self.fleet_plan))
        return tuple(rows)


def strategy_cells(results: dict[str, Any]) -> tuple[StrategyCell, ...]:
    """One deployment's stored strategy results as table cells, in the planner's order."""
    cells = []
    for name in PLANNER_ORDER:
        result = results.get(name)
        if result is None:
            continue
        # results stored before the engine kept a reference: their baseline (today)
        reference = result.get("reference") or result.get("baseline") or {}
        before = finite(reference.get("usd_per_month"))
        after = finite((result.get("projected") or {}).get("usd_per_month"))
        judged = result.get("status") in ("recommended", "not_recommended")
        saved = None if before is None or after is None or not judged else before - after
        cells.append(
            StrategyCell(
                strategy=name,
                status=str(result.get("status", "")),
                summary=str(result.get("summary", "")),
                savings_usd_per_month=saved,
                savings_fraction=saved / before if saved is not None and before else None,
                projected=result.get("projected") or {},
                assumptions=tuple(result.get("assumptions") or ()),
                risks=tuple(result.get("risks") or ()),
            )
        )
    return tuple(cells)


def waterfall_steps(
    combinations: list[dict[str, Any]], baseline_usd: float | None, plan_usd: float | None
) -> tuple[WaterfallStep, ...]:
    """Today -> right-sizing -> each enabled strategy in the planner's order -> plan."""
    if baseline_usd is None or not combinations:
        return ()
    by_set = {frozenset(row.get("strategies") or ()): row for row in combinations}
    enabled = max(by_set, key=len)
    order = [name for name in PLANNER_ORDER if name in enabled]
    order += sorted(enabled - set(order))
    steps = [WaterfallStep("today (simulated)", baseline_usd, "absolute")]
    previous = baseline_usd
    chosen: list[str] = []
    for name in [None, *order]:
        if name is not None:
            chosen.append(name)
        row = by_set.get(frozenset(chosen))
        cost = finite(row.get("usd_per_month")) if row else None
        if cost is None:
            continue
        label = "right-sizing" if name is None else f"+ {strategy_label(name)}"
        note = "" if row is None or row.get("meets_slo", True) else "misses an SLO"
        steps.append(WaterfallStep(label, cost - previous, "relative", note))
        previous = cost
    final = plan_usd if plan_usd is not None else previous
    if abs(final - previous) > 0.5:
        steps.append(WaterfallStep("other (planner)", final - previous, "relative"))
    steps.append(WaterfallStep("plan", final, "total"))
    return tuple(steps)


def deployment_confidence(
    *,
    workload: dict[str, Any] | None,
    gap: dict[str, Any] | None,
    calibration: dict[str, Any] | None,
) -> Confidence:
    """A simulated deployment's confidence from what the assessment stored about it."""
    gap = gap or {}
    return confidence_of(
        coverage=Coverage.from_summary(workload),
        util_measured_pct=finite(gap.get("util_measured_pct")),
        util_simulated_pct=finite(gap.get("util_simulated_pct")),
        fit_median_ape=finite((calibration or {}).get("fit_median_ape")),
    )


def plan_view(
    *,
    plan: dict[str, Any],
    strategies: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    measured: dict[str, Any] | None = None,
    gap: dict[str, Any] | None = None,
    data_gaps: list[dict[str, Any]] | None = None,
    calibration: dict[str, Any] | None = None,
) -> PlanView:
    """The page's arrangement of a stored plan; with `calibration` (an assessment, not a
    what-if) each simulated deployment is judged (`deployment_confidence`)."""
    inputs = inputs or {}
    measured = measured or {}
    gap = gap or {}
    stored = inputs.get("deployments") or {}
    held = {str(h.get("deployment")): h for h in plan.get("held") or ()}
    views = []
    for item in plan.get("deployments") or ():
        name = item["deployment"]
        given = stored.get(name) or {}
        change = item.get("config_change") or {}
        old_path = given.get("model_id")
        new_path = change.get("model_path")
        old_replicas = given.get("replicas")
        new_replicas = change.get("replicas")
        judged = None
        if calibration is not None and item.get("baseline") is not None:
            judged = deployment_confidence(
                workload=given.get("workload"),
                gap=(gap.get("deployments") or {}).get(name),
                calibration=calibration.get(given.get("kind") or ""),
            )
        views.append(
            DeploymentView(
                name=name,
                status=item.get("status", ""),
                message=item.get("message", ""),
                measured=(measured.get("deployments") or {}).get(name),
                baseline=item.get("baseline"),
                plan=item.get("plan"),
                gap=(gap.get("deployments") or {}).get(name),
                strategies_used=tuple(item.get("strategies") or ()),
                slo=given.get("slo") or {},
                args=args_diff(given.get("engine_args") or {}, change),
                model_path=(old_path, new_path) if new_path else None,
                replicas=(old_replicas, new_replicas) if new_replicas is not None else None,
                manifests=dict(change.get("manifests") or {}),
                notes=tuple(change.get("notes") or ()),
                strategy_cells=strategy_cells(strategies.get(name) or {}),
                workload=given.get("workload"),
                inputs=given,
                held=held.get(name),
                confidence=judged,
                constraints=dict(item.get("constraints") or {}),
                plan_config=dict(item.get("config") or {}),
                move=str(item.get("move") or ""),
                prefix_reuse=prefix_reuse_line(item.get("prefix_reuse") or ()),
            )
        )
    listed = {view.name for view in views}
    gaps = list(data_gaps or ())
    gap_names = {g.get("deployment") for g in gaps}
    # held in a what-if's plan though not in its scenario (the assessment's below the floor)
    gaps += [{"deployment": n, "message": h.get("reason", "")} for n, h in held.items()
             if n not in listed and n not in gap_names]  # fmt: skip
    for missing in gaps:
        name = missing.get("deployment", "?")
        kept = held.get(name) if name not in listed else None
        views.append(
            DeploymentView(
                name=name,
                status=NOT_ENOUGH_DATA if kept is not None else "not assessed",
                message=missing.get("message", ""),
                measured=(measured.get("deployments") or {}).get(missing.get("deployment")),
                baseline=None,
                plan=None,
                gap=None,
                strategies_used=(),
                slo={},
                args=(),
                model_path=None,
                replicas=None,
                manifests={},
                notes=tuple(missing.get("missing") or ()),
                strategy_cells=(),
                workload=None,
                inputs={"have": missing.get("have") or {}},
                held=kept,
                confidence=Confidence(
                    NOT_ENOUGH_DATA,
                    (str(missing.get("message", "")).removeprefix(f"deployment {name}: "),),
                )
                if kept is not None and calibration is not None
                else None,
            )
        )
    combinations = list(plan.get("combinations") or ())
    baseline = plan.get("fleet_baseline") or {}
    final = plan.get("fleet_plan") or {}
    enabled = max((frozenset(r.get("strategies") or ()) for r in combinations), key=len,
                  default=frozenset())  # fmt: skip
    ordered = tuple(s for s in PLANNER_ORDER if s in enabled)
    sensitivity = tuple(plan.get("sensitivity") or ())
    return PlanView(
        fleet_baseline=baseline,
        fleet_plan=final,
        savings_usd_per_month=finite(plan.get("savings_usd_per_month")),
        savings_fraction=finite(plan.get("savings_fraction")),
        deployments=tuple(views),
        combinations=tuple(combinations),
        waterfall=waterfall_steps(
            combinations, finite(baseline.get("usd_per_month")), finite(final.get("usd_per_month"))
        ),
        sensitivity=sensitivity,
        assumptions=tuple(plan.get("assumptions") or ()),
        messages=tuple(plan.get("messages") or ()),
        sharing=tuple((plan.get("sharing") or {}).get("groups") or ()),
        strategies=ordered,
        held=tuple(held.values()),
    )


def assessment_view(assessment: Assessment) -> PlanView:
    return plan_view(
        plan=assessment.plan or {},
        strategies=assessment.strategies or {},
        inputs=assessment.inputs or {},
        measured=assessment.measured or {},
        gap=assessment.gap or {},
        data_gaps=assessment.data_gaps or [],
        calibration=assessment.calibration or {},
    )


def calibration_views(assessment: Assessment) -> tuple[CalibrationView, ...]:
    """Per GPU kind the assessment used: the profile's source and fit error."""
    users: dict[str, list[str]] = {}
    for name, given in ((assessment.inputs or {}).get("deployments") or {}).items():
        if given.get("kind") and given.get("workload"):  # assessed (not a data gap)
            users.setdefault(given["kind"], []).append(name)
    rows = []
    for kind, entry in sorted((assessment.calibration or {}).items()):
        if kind not in users:
            continue
        rows.append(
            CalibrationView(
                kind=kind,
                deployments=tuple(users[kind]),
                source=str(entry.get("source", "")),
                fit_median_ape=finite(entry.get("fit_median_ape")),
                fitted_here=entry.get("record_id") is not None,
            )
        )
    return tuple(rows)


def calibration_range(view: PlanView) -> tuple[float, float] | None:
    """The plan's monthly cost at the ends of the calibration sensitivity rows (low, high)."""
    values = [
        finite(row.get(key))
        for row in view.sensitivity
        if str(row.get("input", "")).startswith("calibration")
        for key in ("plan_usd_per_month_low", "plan_usd_per_month_high")
    ]
    known = [v for v in values if v is not None]
    return (min(known), max(known)) if known else None


def assumptions_of(assessment: Assessment, view: PlanView) -> tuple[str, ...]:
    """The plan's assumptions, then prices, SLO defaults and workload notes, de-duplicated."""
    out: list[str] = list(view.assumptions)
    inputs = assessment.inputs or {}
    for kind, price in sorted((inputs.get("prices") or {}).items()):
        flag = "" if price.get("from_price_sheet") else " (no price sheet row: a list price)"
        out.append(
            f"{kind}: ${price.get('usd_per_gpu_hour', 0):.2f} per GPU-hour, "
            f"{price.get('source', '')}{flag}"
        )
    for name, given in sorted((inputs.get("deployments") or {}).items()):
        defaults = [key for key, slo in (given.get("slo") or {}).items() if slo.get("default")]
        if defaults:
            out.append(f"{name}: SLO defaults used for {', '.join(defaults)}")
        workload = given.get("workload") or {}
        for note in workload.get("notes") or ():
            out.append(f"{name}: {note}")
        if workload.get("rate_source"):
            out.append(f"{name}: arrival rate from {workload['rate_source']}")
    for deployment in view.deployments:
        for cell in deployment.strategy_cells:
            out.extend(f"{deployment.name}, {cell.strategy}: {a}" for a in cell.assumptions)
    return tuple(dict.fromkeys(out))


def in_totals(plan: dict[str, Any]) -> tuple[str, ...]:
    """The deployments a stored plan's totals count: the simulated ones and the held ones
    (what "simulated today" covers, so what "measured today" must cover too)."""
    simulated = [d.get("deployment") for d in plan.get("deployments") or () if d.get("baseline")]
    held = [h.get("deployment") for h in plan.get("held") or ()]
    return tuple(dict.fromkeys(str(name) for name in (*simulated, *held) if name))


def measured_of(measured: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """What the telemetry measured for `names` (summed), and for the whole cluster.

    `gpus` counts the GPUs assigned to them (as the simulated figures count GPUs); the GPU
    accounting says where the rest of the cluster's GPUs are.
    """
    by_name = measured.get("deployments") or {}
    rows = [by_name[name] for name in names if name in by_name]
    usd = [finite(row.get("usd_per_month")) for row in rows]
    samples = [row.get("sample_count") or 0 for row in rows]
    utils = [finite(row.get("util_mean_pct")) for row in rows]
    weighted = [(u, n) for u, n in zip(utils, samples, strict=True) if u is not None and n]
    total = sum(n for _, n in weighted)
    cluster = measured.get("fleet") or {}
    gpus = sum(int(row.get("gpu_count") or 0) for row in rows)
    not_assessed = {
        name: int(row.get("gpu_count") or 0)
        for name, row in sorted(by_name.items())
        if name not in names and row.get("gpu_count")
    }
    return {
        "usd_per_month": sum(u for u in usd if u is not None) if rows else None,
        "gpus": gpus if rows else None,
        "gpu_hours": sum(finite(row.get("gpu_hours")) or 0.0 for row in rows) if rows else None,
        "util_mean_pct": sum(u * n for u, n in weighted) / total if total else None,
        "cluster": cluster,
        "accounting": gpu_accounting(
            cluster_gpus=int(cluster.get("gpu_count") or 0),
            in_totals=gpus,
            not_assessed=not_assessed,
            unassigned=int((measured.get("unassigned") or {}).get("gpu_count") or 0),
        )
        if cluster
        else "",
    }


def gpu_accounting(
    *, cluster_gpus: int, in_totals: int, not_assessed: dict[str, int], unassigned: int
) -> str:
    """Where the cluster's GPUs are: in the totals, in deployments not assessed, unassigned."""
    parts = [f"{in_totals} in the assessment's totals"]
    if not_assessed:
        names = ", ".join(f"{name}: {count}" for name, count in not_assessed.items())
        parts.append(f"{sum(not_assessed.values())} in deployments not assessed ({names})")
    if unassigned:
        parts.append(f"{unassigned} assigned to no deployment")
    text = f"The cluster's {cluster_gpus} GPU{'' if cluster_gpus == 1 else 's'}: " + "; ".join(
        parts
    )
    if in_totals + sum(not_assessed.values()) + unassigned != cluster_gpus:
        text += " (a GPU that serves two deployments counts in each)"
    return text + "."


def measured_assessed(assessment: Assessment, view: PlanView) -> dict[str, Any]:
    """What the telemetry measured for the deployments in the totals (the assessed ones and
    those held at today's cost, as the simulated baseline covers), and for the cluster."""
    return measured_of(assessment.measured or {}, tuple(d.name for d in view.rows))


def measured_in_totals(assessment: Assessment) -> dict[str, Any]:
    """`measured_assessed` from the stored plan alone (lists and trends: no page view)."""
    return measured_of(assessment.measured or {}, in_totals(assessment.plan or {}))


@dataclass(frozen=True)
class DeploymentPlanned:
    """A deployment's row in the latest completed assessment that planned it."""

    assessment_id: int
    window_end: Any
    row: CostEnergyRow
    status: str
    message: str


LATEST_ASSESSMENTS_SEARCHED = 10  # a deployment missing from this many is not shown


def deployment_latest_plan(*, cluster_id: int, name: str) -> DeploymentPlanned | None:
    """The latest completed assessment of the cluster that assessed `name`, as its row."""
    rows = (
        Assessment.objects.filter(cluster_id=cluster_id, status=AssessmentStatus.COMPLETED)
        .order_by("-window_end", "-id")
        .only("id", "window_end", "plan")[:LATEST_ASSESSMENTS_SEARCHED]
    )
    for assessment in rows:
        for item in (assessment.plan or {}).get("deployments") or ():
            if item.get("deployment") != name or item.get("baseline") is None:
                continue
            ok = item.get("status") == "ok"
            return DeploymentPlanned(
                assessment_id=assessment.pk,
                window_end=assessment.window_end,
                row=cost_energy_row(name, item.get("baseline"), item.get("plan") if ok else None),
                status=str(item.get("status", "")),
                message=str(item.get("message", "")),
            )
    return None


@dataclass(frozen=True)
class TrendPoint:
    assessment_id: int
    window_end: str
    measured_usd_per_month: float | None
    measured_util_pct: float | None
    plan_usd_per_month: float | None
    baseline_usd_per_month: float | None


def assessment_trend(*, cluster_id: int, limit: int = 52) -> tuple[TrendPoint, ...]:
    """The cluster's completed assessments, oldest first (the weekly trend)."""
    rows = (
        Assessment.objects.filter(cluster_id=cluster_id, status=AssessmentStatus.COMPLETED)
        .order_by("-window_end", "-id")
        .only("id", "window_end", "measured", "plan")[:limit]
    )
    points = []
    for row in reversed(list(rows)):
        # the deployments the simulated baseline covers, not the whole cluster
        measured = measured_in_totals(row)
        plan = row.plan or {}
        points.append(
            TrendPoint(
                assessment_id=row.pk,
                window_end=row.window_end.isoformat(),
                measured_usd_per_month=finite(measured.get("usd_per_month")),
                measured_util_pct=finite(measured.get("util_mean_pct")),
                plan_usd_per_month=finite((plan.get("fleet_plan") or {}).get("usd_per_month")),
                baseline_usd_per_month=finite(
                    (plan.get("fleet_baseline") or {}).get("usd_per_month")
                ),
            )
        )
    return tuple(points)
