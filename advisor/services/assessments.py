"""Writes of assessments: create (queued on the `sim` queue), execute, re-run, schedules.

`assessment_start` validates the cluster and window (errors name the field), returns the
identical assessment already queued or running if there is one, refuses a user past the
per-minute limit, else stores a queued `Assessment` and queues its run when the caller's
transaction commits. `assessment_execute` (the `sim` task, after claiming the row)
reads the fleet and its telemetry, measures today's utilization and cost, derives each
deployment's workload (or records what is missing), builds the engine's `Scenario`, stores
its JSON, runs the engine and stores each strategy's result, the plan, the simulated
baseline beside the measured figures and the gap, and timings. A deployment below the data
floor (`advisor.evidence`) is not given to the engine and not priced: the stored plan holds it
at today's cost in its totals (`advisor.held`). On completion it links the
cluster's previous completed one (completion order, under a lock) and the trend since it;
progress is written as it goes. Schedules are django-celery-beat PeriodicTasks,
one per cluster, weekly by default, editable in the admin.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from advisor.engine.bounds import WINDOW_DAYS
from advisor.held import held_entry, held_of, plan_hold
from advisor.models import Assessment, AssessmentSchedule, AssessmentStatus
from advisor.selectors.assessment_fleet import Fleet, fleet_of
from advisor.selectors.assessment_measured import gpu_telemetry_in_window, usage_measured
from advisor.selectors.assessment_workload import DataGap, DerivedWorkload, workload_derive
from advisor.services.assessment_engine import EngineOutcome, scenario_build, scenario_run
from advisor.services.beat import beat_task_save
from probes.models import Cluster, ModelDeployment

MIN_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=WINDOW_DAYS.high)
DEFAULT_WINDOW = "7d"
DEFAULT_CRONTAB = {"minute": "0", "hour": "6", "day_of_week": "1"}  # Mondays 06:00
SCHEDULED_TASK = "advisor.tasks.sim.assessment_scheduled"
RATE_PERIOD = timedelta(minutes=1)
_WINDOW = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


class AssessmentThrottled(Exception):
    """The user started as many assessments as allowed in the last minute."""

    def __init__(self, *, retry_after_s: int, limit: int) -> None:
        self.retry_after_s = retry_after_s
        self.message = (
            f"too many started: at most {limit} per minute per user; try again in {retry_after_s} s"
        )
        super().__init__(self.message)


class AssessmentInputError(ValueError):
    """Bad input to an assessment; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def window_parse(text: Any) -> timedelta:
    """ "7d", "24h" or "2w" -> a timedelta within 1 h .. 90 d."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise AssessmentInputError("window", f"expected e.g. 7d, 24h or 2w, got {text!r}")
    count, unit = int(match.group(1)), match.group(2)
    window = {"h": timedelta(hours=count), "d": timedelta(days=count),
              "w": timedelta(weeks=count)}[unit]  # fmt: skip
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise AssessmentInputError("window", f"must be 1h..90d, got {text!r}")
    return window


@dataclass(frozen=True)
class AssessmentStart:
    """What a start request got: a new assessment, or the identical one already under way."""

    assessment: Assessment
    created: bool


def assessment_start(
    *,
    cluster: Any,
    window: Any = DEFAULT_WINDOW,
    user: Any = None,
    schedule: AssessmentSchedule | None = None,
    end: datetime | None = None,
) -> AssessmentStart:
    """A queued assessment of `cluster` (a Cluster or its name) over the `window` ending at the
    last whole hour (or `end`); its run is queued on the `sim` queue when the caller commits.

    An identical one (same cluster, window start and end) already queued or running is
    returned instead (`created` False). A user who started `ASSESSMENTS_PER_USER_PER_MINUTE`
    in the last minute gets AssessmentThrottled; scheduled ones (no user) are not counted.
    """
    found = _cluster_of(cluster)
    span = window_parse(window)
    window_end = (end or timezone.now()).replace(minute=0, second=0, microsecond=0)
    window_start = window_end - span
    with transaction.atomic():
        # Serializes starts per cluster: of two identical requests at once, the second waits
        # here and then finds the first's row instead of queueing a second run.
        Cluster.objects.select_for_update().get(pk=found.pk)
        running = (
            Assessment.objects.filter(
                cluster=found,
                window_start=window_start,
                window_end=window_end,
                status__in=(AssessmentStatus.QUEUED, AssessmentStatus.RUNNING),
            )
            .order_by("id")
            .first()
        )
        if running is not None:
            return AssessmentStart(running, created=False)
        creator = user if getattr(user, "pk", None) else None
        _throttle(creator)
        assessment = Assessment.objects.create(
            cluster=found,
            window_start=window_start,
            window_end=window_end,
            schedule=schedule,
            created_by=creator,
            progress_message="queued",
        )
        transaction.on_commit(lambda: _queue_run(assessment.pk))
    return AssessmentStart(assessment, created=True)


def assessment_create(
    *,
    cluster: Any,
    window: Any = DEFAULT_WINDOW,
    user: Any = None,
    schedule: AssessmentSchedule | None = None,
    end: datetime | None = None,
) -> Assessment:
    """`assessment_start`'s assessment, for callers that need not tell new from existing."""
    started = assessment_start(
        cluster=cluster, window=window, user=user, schedule=schedule, end=end
    )
    return started.assessment


def _cluster_of(cluster: Any) -> Cluster:
    if isinstance(cluster, Cluster):
        return cluster
    if not isinstance(cluster, str) or not cluster.strip():
        raise AssessmentInputError("cluster", "required: a cluster name")
    found = Cluster.objects.filter(name=cluster.strip()).first()
    if found is None:
        # The unknown name only: listing the others would tell any caller every cluster's name.
        raise AssessmentInputError("cluster", f"no cluster named {cluster.strip()!r}")
    return found


def _throttle(user: Any) -> None:
    """AssessmentThrottled when `user` started the allowed number in the last minute."""
    if user is None:
        return
    limit = settings.ASSESSMENTS_PER_USER_PER_MINUTE
    since = timezone.now() - RATE_PERIOD
    recent = list(
        Assessment.objects.filter(created_by=user, created_at__gt=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return
    # The oldest of the last `limit` leaves the minute first: one more may start then.
    wait = recent[-1] + RATE_PERIOD - timezone.now()
    raise AssessmentThrottled(retry_after_s=max(1, math.ceil(wait.total_seconds())), limit=limit)


def _queue_run(assessment_id: int) -> None:
    from advisor.tasks.sim import assessment_run

    assessment_run.delay(assessment_id)


def _progress(assessment_id: int, fraction: float, message: str) -> None:
    Assessment.objects.filter(id=assessment_id).update(
        progress=round(min(max(fraction, 0.0), 1.0), 4), progress_message=message[:255]
    )


def assessment_execute(*, assessment_id: int) -> Assessment:
    """Run a claimed (`running`) assessment to the end and store everything it found."""
    assessment = Assessment.objects.select_related("cluster").get(id=assessment_id)
    start, end = assessment.window_start, assessment.window_end
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    _progress(assessment_id, 0.02, "reading the fleet")
    fleet = fleet_of(cluster=assessment.cluster)
    lap("fleet_s")
    _progress(assessment_id, 0.05, "measuring utilization and cost from telemetry")
    telemetry = gpu_telemetry_in_window(
        gpu_ids=[gpu.id for gpu in fleet.gpus], start=start, end=end
    )
    measured = _measured(fleet, telemetry, start, end)
    lap("measured_s")

    rows = {d.id: d for d in ModelDeployment.objects.filter(cluster=assessment.cluster)}
    workloads: list[DerivedWorkload] = []
    gaps: list[DataGap] = []
    total = max(len(fleet.deployments), 1)
    for i, deployment in enumerate(fleet.deployments):
        _progress(assessment_id, 0.1 + 0.3 * i / total, f"deriving {deployment.served_name}")
        if deployment.problems:
            gaps.append(
                DataGap(
                    deployment.id,
                    deployment.served_name,
                    f"deployment {deployment.served_name}: " + "; ".join(deployment.problems),
                    deployment.problems,
                    {"gpus": len(deployment.gpus)},
                )
            )
            continue
        observed = max((telemetry[g].hours_observed for g in deployment.gpu_ids), default=0)
        derived = workload_derive(
            deployment=rows[deployment.id],
            gpu_ids=deployment.gpu_ids,
            gpu_hours_observed=float(observed),
            start=start,
            end=end,
            seed=assessment_id,
        )
        if isinstance(derived, DataGap):
            gaps.append(derived)
        else:
            workloads.append(derived)
    lap("workloads_s")

    _progress(assessment_id, 0.42, "building the scenario")
    scenario, refused = scenario_build(
        fleet=fleet, workloads=workloads, start=start, end=end, seed=0
    )
    gaps.extend(refused)
    assessed = {w.deployment_id for w in workloads} - {g.deployment_id for g in refused}
    inputs = _inputs_json(fleet, [w for w in workloads if w.deployment_id in assessed])
    calibration = {kind: c.to_json() for kind, c in fleet.calibrations.items()}
    if scenario is None:
        _finish(
            assessment,
            outcome=None,
            inputs=inputs,
            calibration=calibration,
            measured=measured,
            data_gaps=[gap.to_json() for gap in gaps],
            timings=timings,
            progress_message="no deployment has enough data to assess",
        )
        return Assessment.objects.get(id=assessment_id)
    scenario_json = scenario.to_json()
    Assessment.objects.filter(id=assessment_id).update(
        scenario=scenario_json, scenario_digest=scenario.digest()
    )
    lap("scenario_s")

    def on_progress(fraction: float, message: str) -> None:
        _progress(assessment_id, 0.45 + 0.5 * fraction, message)

    outcome = scenario_run(scenario, progress=on_progress)
    outcome = replace(
        outcome,
        plan=plan_hold(outcome.plan, _held(fleet, gaps, scenario.options.hours_per_month)),
    )
    lap("engine_s")
    gap = _gap(measured, outcome)
    timings["total_s"] = round(sum(timings.values()), 4)
    _finish(
        assessment,
        outcome=outcome,
        inputs=inputs,
        calibration=calibration,
        measured=measured,
        data_gaps=[g.to_json() for g in gaps],
        timings=timings,
        engine_version=outcome.engine_version,
        baseline=outcome.baseline,
        strategies=outcome.strategies,
        plan=outcome.plan,
        gap=gap,
        progress_message="done",
    )
    return Assessment.objects.get(id=assessment_id)


def _finish(
    assessment: Assessment,
    *,
    outcome: EngineOutcome | None,
    measured: dict[str, Any],
    progress_message: str,
    **fields: Any,
) -> None:
    """Store the results, link the cluster's last completed assessment and the trend since it.

    The link is made here, not when the assessment is queued, and under a lock on the cluster
    row: of two finishing at once the second waits and links to the first, so `previous`
    stays one line in completion order however many runs overlap (linked at queue time, two
    queued together both pointed at the same one).
    """
    with transaction.atomic():
        Cluster.objects.select_for_update().get(pk=assessment.cluster_id)
        previous = (
            Assessment.objects.filter(
                cluster_id=assessment.cluster_id, status=AssessmentStatus.COMPLETED
            )
            .exclude(id=assessment.pk)
            .order_by(F("finished_at").desc(nulls_last=True), "-id")
            .first()
        )
        Assessment.objects.filter(id=assessment.pk, status=AssessmentStatus.RUNNING).update(
            status=AssessmentStatus.COMPLETED,
            progress=1.0,
            progress_message=progress_message,
            finished_at=timezone.now(),
            previous=previous,
            measured=_plain(measured),
            trend=_plain(_trend(previous, measured, outcome)),
            **{name: _plain(value) for name, value in fields.items()},
        )


def _held(fleet: Fleet, gaps: list[DataGap], hours_per_month: float) -> list[dict[str, Any]]:
    """The deployments below the data floor at today's cost: their GPUs at their price."""
    by_id = {d.id: d for d in fleet.deployments}
    held = []
    for gap in gaps:
        deployment = by_id.get(gap.deployment_id)
        kind = deployment.kind if deployment is not None else None
        if not gap.below_floor or deployment is None or kind is None or kind not in fleet.prices:
            continue
        held.append(
            held_entry(
                deployment=gap.served_name,
                status="not_enough_data",
                reason=gap.message,
                hardware=kind,
                gpus=float(len(deployment.gpus)),
                usd_per_gpu_hour=fleet.prices[kind].usd_per_gpu_hour,
                hours_per_month=hours_per_month,
            )
        )
    return held


def _plain(value: Any) -> Any:
    """JSON-safe (numpy scalars to floats, NaN/inf to None), as PostgreSQL's jsonb needs."""

    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return None
        return item

    return clean(json.loads(json.dumps(value, default=float)))


def _measured(
    fleet: Fleet, telemetry: dict[int, Any], start: datetime, end: datetime
) -> dict[str, Any]:
    prices = fleet.price_of_gpu()
    all_ids = [gpu.id for gpu in fleet.gpus]
    per_deployment = {
        d.served_name: usage_measured(
            telemetry=telemetry, gpu_ids=d.gpu_ids, price_usd_per_gpu_hour=prices,
            start=start, end=end,
        ).to_json()
        for d in fleet.deployments
    }  # fmt: skip
    assigned = {gpu_id for d in fleet.deployments for gpu_id in d.gpu_ids}
    unassigned = [gpu_id for gpu_id in all_ids if gpu_id not in assigned]
    return {
        "fleet": usage_measured(
            telemetry=telemetry, gpu_ids=all_ids, price_usd_per_gpu_hour=prices,
            start=start, end=end,
        ).to_json(),
        "unassigned": usage_measured(
            telemetry=telemetry, gpu_ids=unassigned, price_usd_per_gpu_hour=prices,
            start=start, end=end,
        ).to_json(),
        "deployments": per_deployment,
        "gpus": {
            str(gpu_id): {
                "sample_count": row.sample_count,
                "util_mean_pct": row.util_mean_pct,
                "hours_observed": row.hours_observed,
                "sources": list(row.sources),
            }
            for gpu_id, row in telemetry.items()
        },
    }  # fmt: skip


def _inputs_json(fleet: Fleet, workloads: list[DerivedWorkload]) -> dict[str, Any]:
    by_id = {w.deployment_id: w for w in workloads}
    return {
        "gpus_per_node_and_kind": fleet.gpus_per_node_and_kind(),
        "unknown_gpu_names": list(fleet.unknown_gpu_names),
        "prices": {kind: price.to_json() for kind, price in fleet.prices.items()},
        # Stored values out of their bounds, skipped by name (see `fleet_of`).
        "refused_rows": [refusal.to_json() for refusal in fleet.refused],
        "deployments": {
            d.served_name: {
                "id": d.id,
                "model_id": d.model_id,
                "model": d.model.name if d.model else None,
                "engine_args": d.engine_args,
                "replicas": d.replicas,
                "tensor_parallel": dict(zip(("value", "source"), d.tensor_parallel(), strict=True)),
                "gpus": len(d.gpus),
                "kind": d.kind,
                "slo": {k: {"value": v.value, "default": v.is_default} for k, v in d.slo.items()},
                "min_replicas": {"value": d.min_replicas, "default": d.min_replicas is None},
                "workload": by_id[d.id].summary() if d.id in by_id else None,
            }
            for d in fleet.deployments
        },
    }


def _gap(measured: dict[str, Any], outcome: EngineOutcome) -> dict[str, Any]:
    """Measured minus simulated, per deployment and for the assessed fleet."""
    result: dict[str, Any] = {"deployments": {}}
    for name, simulated in outcome.baseline.get("deployments", {}).items():
        real = measured["deployments"].get(name)
        if real is None:
            continue
        util_real = real["util_mean_pct"]
        util_sim = simulated.get("util_pct")
        cost_real = real["usd_per_month"]
        cost_sim = simulated.get("usd_per_month")
        result["deployments"][name] = {
            "util_measured_pct": util_real,
            "util_simulated_pct": util_sim,
            "util_gap_pct_points": None
            if util_real is None or util_sim is None
            else util_real - util_sim,
            "usd_per_month_measured": cost_real,
            "usd_per_month_simulated": cost_sim,
            "usd_per_month_gap": None if cost_sim is None else cost_real - cost_sim,
        }
    return result


def _trend(
    previous: Assessment | None, measured: dict[str, Any], outcome: EngineOutcome | None
) -> dict[str, Any]:
    """Change since the cluster's previous finished assessment (none: an empty dict)."""
    if previous is None or not previous.measured:
        return {}
    now, before = measured["fleet"], previous.measured.get("fleet", {})
    trend: dict[str, Any] = {
        "previous_id": previous.id,
        "previous_window_end": previous.window_end.isoformat(),
        "util_mean_pct": [before.get("util_mean_pct"), now["util_mean_pct"]],
        "usd_per_month": [before.get("usd_per_month"), now["usd_per_month"]],
    }
    if before.get("usd_per_month") is not None:
        # What the fleet costs less now than then, measured: savings realized so far.
        trend["savings_realized_usd_per_month"] = before["usd_per_month"] - now["usd_per_month"]
    projected = (previous.plan or {}).get("savings_usd_per_month")
    if projected is not None:
        trend["savings_projected_then_usd_per_month"] = projected
    if outcome is not None:
        trend["savings_projected_now_usd_per_month"] = outcome.plan.get("savings_usd_per_month")
    return trend


def assessment_fail(*, assessment_id: int, error: str) -> None:
    Assessment.objects.filter(id=assessment_id, status=AssessmentStatus.RUNNING).update(
        status=AssessmentStatus.FAILED, error=error, finished_at=timezone.now()
    )


def assessment_rerun(*, assessment: Assessment) -> tuple[EngineOutcome, list[str]]:
    """Run the engine again on the stored scenario snapshot; returns the outcome and the
    names of the stored fields (baseline, strategies, plan) whose numbers came out different.
    """
    from advisor.services.assessment_engine import scenario_from_json

    if not assessment.scenario:
        raise AssessmentInputError("scenario", "this assessment stored no scenario")
    outcome = scenario_run(scenario_from_json(assessment.scenario), progress=None)
    outcome = replace(outcome, plan=plan_hold(outcome.plan, held_of(assessment.plan)))
    differ = [
        name
        for name in ("baseline", "strategies", "plan")
        if _plain(getattr(outcome, name)) != getattr(assessment, name)
    ]
    return outcome, differ


# -- schedules ----------------------------------------------------------------------------------


def schedule_save(
    *,
    cluster: Cluster,
    window_days: int = 7,
    enabled: bool = True,
    crontab: dict[str, str] | None = None,
) -> AssessmentSchedule:
    """Create or update a cluster's recurring assessment and its beat task (all or nothing)."""
    problem = WINDOW_DAYS.problem(window_days)
    if problem:
        raise AssessmentInputError("window_days", problem)
    with transaction.atomic():
        schedule, _ = AssessmentSchedule.objects.get_or_create(cluster=cluster)
        schedule.window_days = window_days
        beat_task_save(
            schedule=schedule,
            name=f"assessment: {cluster.name}",
            task=SCHEDULED_TASK,
            crontab=crontab or DEFAULT_CRONTAB,
            enabled=enabled,
            queue="sim",
        )
    return schedule


def schedules_ensure() -> int:
    """Give every cluster without one the default weekly assessment; returns how many."""
    created = 0
    for cluster in Cluster.objects.filter(assessment_schedule__isnull=True):
        schedule_save(cluster=cluster)
        created += 1
    return created


def assessment_scheduled_create(*, schedule_id: int) -> Assessment | None:
    """What the weekly beat task does: a new assessment of the schedule's cluster."""
    schedule = AssessmentSchedule.objects.select_related("cluster").filter(pk=schedule_id).first()
    if schedule is None:
        return None
    return assessment_create(
        cluster=schedule.cluster, window=f"{schedule.window_days}d", schedule=schedule
    )
