"""Advancing a started rollout, one short idempotent step at a time (the `rollout` queue).

`rollout_advance` reads the persisted state (rollout status, each target's status,
generations, bake start), does what is due, and returns how long until the next step is
due (None: nothing more to do). Every write happens under a row lock and checks the state
it expects first, so a step repeated after a worker died (or delivered twice) does nothing
twice: a node gets one desired-config generation per target, a verdict is stored once.

Per target: `pending` -> `applying` (its node's desired config gets the change as a new
generation; the previous config is kept as the restore point) -> `baking` (the node reports
that generation serving; the bake starts from that report) -> `verified` (after the bake,
every gate of `advisor.rollouts.gates` passed) or `failed` (the node could not apply it,
vLLM exited, a gate failed, or the node stayed silent past `apply_timeout_s`). Batch 0 is
the canary; the next batch starts only when every earlier target is verified and no more
than `max_unavailable` targets would be down at once. A failed target rolls the whole
rollout back: each touched node gets its previous config as a new generation, at most
`max_unavailable` at a time, failed nodes first; `rolled_back` when all serve it again,
`failed` when one cannot be restored (a person must look).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from advisor.models import (
    LedgerEntry,
    Rollout,
    RolloutStatus,
    RolloutTarget,
    TargetStatus,
)
from advisor.rollouts.gates import GateLimits, evaluate, health_problem
from advisor.services.rollouts import audit, transition
from probes.agent.desired import NodeConfig
from probes.node_config import node_desired_config_set

IN_FLIGHT = (TargetStatus.APPLYING, TargetStatus.BAKING)
TOUCHED = (TargetStatus.APPLYING, TargetStatus.BAKING, TargetStatus.VERIFIED, TargetStatus.FAILED)
# Probes keep running a little past the bake so the last report still covers its end.
PROBE_MARGIN_S = 30.0


def poll_s() -> float:
    """Seconds between steps while something is in flight (settings.ROLLOUT_POLL_S)."""
    return float(getattr(settings, "ROLLOUT_POLL_S", 2.0))


def rollout_advance(*, rollout_id: int, now: datetime | None = None) -> float | None:
    """Do what is due for one rollout; seconds until the next step, None when nothing is."""
    now = now or timezone.now()
    rollout = Rollout.objects.select_related("change").get(id=rollout_id)
    Rollout.objects.filter(id=rollout_id).update(last_step_at=now)
    if rollout.status == RolloutStatus.ROLLING_BACK:
        return _advance_rollback(rollout, now)
    if rollout.status not in (RolloutStatus.CANARY, RolloutStatus.PROGRESSING):
        return None
    targets = list(rollout.targets.select_related("node").order_by("position"))
    for target in targets:
        if target.status in IN_FLIGHT:
            failure = _check_target(rollout, target, now)
            if failure is not None:
                begin_rollback(rollout.id, why=f"{target.node.hostname}: {failure}")
                return 0.0
    if any(t.status in IN_FLIGHT for t in targets):
        return poll_s()
    pending = [t for t in targets if t.status == TargetStatus.PENDING]
    if not pending:
        _finish(rollout, now)
        return None
    if rollout.paused:
        return None  # resume re-queues it
    batch_no = min(t.batch for t in pending)
    batch = [t for t in pending if t.batch == batch_no]
    down = [t for t in targets if t.status == TargetStatus.VERIFIED and not _serving(t)]
    if down and len(down) + len(batch) > rollout.max_unavailable:
        names = ", ".join(t.node.hostname for t in down)
        waited_s = (now - max(t.verified_at or now for t in down)).total_seconds()
        if waited_s > rollout.apply_timeout_s:
            begin_rollback(rollout.id, why=f"{names} stopped serving after being verified")
            return 0.0
        return poll_s()  # wait for them before taking more nodes down
    if rollout.status == RolloutStatus.CANARY and batch_no > 0:
        with transaction.atomic():
            transition(
                rollout.id,
                RolloutStatus.PROGRESSING,
                why=f"canary {targets[0].node.hostname} verified; batches of "
                f"{rollout.max_unavailable} next",
            )
    for target in batch:
        _apply(rollout, target, now)
    return poll_s()


def _serving(target: RolloutTarget) -> bool:
    observed = target.node.observed_config or {}
    return bool(observed.get("state") == "serving" and observed.get("healthy"))


def _bake_s(rollout: Rollout, target: RolloutTarget) -> int:
    return rollout.canary_bake_s if target.batch == 0 else rollout.bake_s


def _apply(rollout: Rollout, target: RolloutTarget, now: datetime) -> None:
    with transaction.atomic():
        target = RolloutTarget.objects.select_for_update().select_related("node").get(id=target.id)
        if target.status != TargetStatus.PENDING:
            return  # a repeated step: already applied
        node = target.node
        observed = node.observed_config or {}
        desired = node.desired_config or {}
        # The restore point: what the node reports it runs, else what it was told to run.
        previous = observed.get("config") or desired.get("config") or NodeConfig().to_json()
        config = NodeConfig.from_json(rollout.change.node_config())
        generation = node_desired_config_set(
            node_id=node.id,
            config=config,
            rollout_id=rollout.id,
            probe_interval_s=rollout.probe_interval_s,
            probe_for_s=_bake_s(rollout, target) + rollout.apply_timeout_s + PROBE_MARGIN_S,
        )
        target.previous_config = previous
        target.desired_generation = generation
        target.status = TargetStatus.APPLYING
        target.applied_at = now
        target.save()
        role = "canary" if target.batch == 0 else f"batch {target.batch}"
        audit(
            rollout,
            f"{node.hostname} ({role}): desired config generation {generation}",
            kind="target",
            target=target,
            data={"config": config.to_json(), "previous": previous},
        )


def _check_target(rollout: Rollout, target: RolloutTarget, now: datetime) -> str | None:
    """Move an in-flight target on; the reason when it failed (it is stored failed)."""
    observed = target.node.observed_config or {}
    generation = target.desired_generation or 0
    failure = observed.get("last_failure") or {}
    reported_at = observed.get("reported_at")
    if target.status == TargetStatus.APPLYING:
        if failure.get("generation") == generation:
            restored = (
                "previous config serves again"
                if failure.get("restored")
                else ("previous config NOT restored")
            )
            return _fail(rollout, target, f"could not apply: {failure.get('error')} ({restored})")
        if (
            observed.get("applied_generation") == generation
            and observed.get("state") == "serving"
            and observed.get("healthy")
        ):
            _start_bake(rollout, target, observed, now)
            return None
        assert target.applied_at is not None
        if (now - target.applied_at).total_seconds() > rollout.apply_timeout_s:
            return _fail(
                rollout,
                target,
                f"did not serve generation {generation} within "
                f"{rollout.apply_timeout_s} s (state {observed.get('state')})",
            )
        return None
    assert target.bake_started_at is not None
    assert target.bake_start is not None
    problem = health_problem(target.bake_start, observed, generation)
    if problem is not None:
        return _fail(rollout, target, problem)
    bake_end = target.bake_started_at + timedelta(seconds=_bake_s(rollout, target))
    if now < bake_end:
        return None
    covered = isinstance(reported_at, int | float) and reported_at >= bake_end.timestamp()
    if not covered or not observed.get("metrics"):  # a scrape can fail once on a busy node
        silent_s = (now - bake_end).total_seconds()
        if silent_s > rollout.apply_timeout_s:
            return _fail(rollout, target, f"no report since the bake ended {silent_s:.0f} s ago")
        return None  # wait for a report that covers the whole bake
    verdict = evaluate(target.bake_start, observed, generation, GateLimits.from_json(rollout.gates))
    with transaction.atomic():
        locked = RolloutTarget.objects.select_for_update().get(id=target.id)
        if locked.status != TargetStatus.BAKING:
            return None
        locked.gate_results = verdict.to_json()
        if verdict.passed:
            locked.status = TargetStatus.VERIFIED
            locked.verified_at = now
            locked.save()
            target.status, target.verified_at = locked.status, now
            audit(
                rollout,
                f"{target.node.hostname}: all gates passed after the bake",
                kind="gate",
                target=locked,
                data=verdict.to_json(),
            )
            return None
        locked.save()
    return _fail(rollout, target, f"gate failed: {verdict.reason}", verdict.to_json())


def _start_bake(
    rollout: Rollout, target: RolloutTarget, observed: dict[str, Any], now: datetime
) -> None:
    with transaction.atomic():
        locked = RolloutTarget.objects.select_for_update().get(id=target.id)
        if locked.status != TargetStatus.APPLYING:
            return
        locked.status = TargetStatus.BAKING
        locked.bake_started_at = now
        locked.bake_start = observed
        locked.save()
        audit(
            rollout,
            f"{target.node.hostname} serves generation {target.desired_generation}; "
            f"baking {_bake_s(rollout, target)} s",
            kind="target",
            target=locked,
        )
    target.status, target.bake_started_at, target.bake_start = locked.status, now, observed


def _fail(
    rollout: Rollout, target: RolloutTarget, reason: str, data: dict[str, Any] | None = None
) -> str:
    with transaction.atomic():
        locked = RolloutTarget.objects.select_for_update().get(id=target.id)
        if locked.status in IN_FLIGHT:
            locked.status = TargetStatus.FAILED
            locked.error = reason
            locked.save()
            audit(
                rollout,
                f"{target.node.hostname}: {reason}",
                kind="gate",
                target=locked,
                data=data or {},
            )
    target.status = TargetStatus.FAILED
    return reason


def begin_rollback(rollout_id: int, *, why: str, user: Any = None) -> Rollout:
    """Turn a started rollout into rolling_back: touched nodes get restored, others stay."""
    with transaction.atomic():
        rollout = transition(
            rollout_id,
            RolloutStatus.ROLLING_BACK,
            why=why,
            user=user,
            fields={"paused": False, "outcome": why},
        )
        rollout.targets.filter(status__in=TOUCHED).update(status=TargetStatus.ROLLING_BACK)
        rollout.targets.filter(status=TargetStatus.PENDING).update(status=TargetStatus.UNTOUCHED)
    return rollout


def _advance_rollback(rollout: Rollout, now: datetime) -> float | None:
    targets = list(rollout.targets.select_related("node").order_by("position"))
    restoring = [t for t in targets if t.status == TargetStatus.ROLLING_BACK]
    in_flight = 0
    for target in restoring:
        if target.rollback_generation is None:
            continue
        outcome = _check_restore(rollout, target, now)
        if outcome is None:
            in_flight += 1
    # Failed nodes first (they are likely down already), then the rest, in order.
    waiting = sorted(
        (t for t in restoring if t.rollback_generation is None),
        key=lambda t: (not t.error, t.position),
    )
    for target in waiting:
        if in_flight >= rollout.max_unavailable and _serving(target):
            break
        _restore(rollout, target, now)
        in_flight += 1
    remaining = rollout.targets.filter(status=TargetStatus.ROLLING_BACK).count()
    if remaining:
        return poll_s()
    failed = list(rollout.targets.filter(status=TargetStatus.FAILED).select_related("node"))
    with transaction.atomic():
        if failed:
            names = "; ".join(f"{t.node.hostname}: {t.error}" for t in failed)
            transition(
                rollout.id,
                RolloutStatus.FAILED,
                why=f"could not restore every node ({names})",
                fields={"outcome": f"{rollout.outcome}; restore failed: {names}"},
            )
        else:
            transition(
                rollout.id,
                RolloutStatus.ROLLED_BACK,
                why="every touched node serves its previous config again",
            )
    return None


def _restore(rollout: Rollout, target: RolloutTarget, now: datetime) -> None:
    with transaction.atomic():
        locked = RolloutTarget.objects.select_for_update().select_related("node").get(id=target.id)
        if locked.status != TargetStatus.ROLLING_BACK or locked.rollback_generation is not None:
            return
        previous = NodeConfig.from_json(locked.previous_config or {"engine_args": {}})
        generation = node_desired_config_set(
            node_id=locked.node_id, config=previous, rollout_id=rollout.id
        )
        locked.rollback_generation = generation
        locked.applied_at = now
        locked.save()
        audit(
            rollout,
            f"{locked.node.hostname}: restoring the previous config as generation {generation}",
            kind="target",
            target=locked,
        )
    target.rollback_generation = generation


def _check_restore(rollout: Rollout, target: RolloutTarget, now: datetime) -> str | None:
    """None while in flight; "restored" or "failed" once settled (stored)."""
    observed = target.node.observed_config or {}
    generation = target.rollback_generation or 0
    failure = observed.get("last_failure") or {}
    if failure.get("generation") == generation:
        error = f"restoring failed: {failure.get('error')}"
        status = TargetStatus.FAILED
    elif (
        (observed.get("applied_generation") or 0) >= generation
        and observed.get("state") == "serving"
        and observed.get("healthy")
    ):
        error, status = "", TargetStatus.ROLLED_BACK
    elif target.applied_at and (now - target.applied_at).total_seconds() > rollout.apply_timeout_s:
        error = f"not serving the previous config {rollout.apply_timeout_s} s after the restore"
        status = TargetStatus.FAILED
    else:
        return None
    with transaction.atomic():
        locked = RolloutTarget.objects.select_for_update().get(id=target.id)
        if locked.status != TargetStatus.ROLLING_BACK:
            return "settled"
        locked.status = status
        locked.error = error or locked.error
        locked.save()
        message = error or "serves its previous config again"
        audit(rollout, f"{target.node.hostname}: {message}", kind="target", target=locked)
    return "restored" if status == TargetStatus.ROLLED_BACK else "failed"


def _finish(rollout: Rollout, now: datetime) -> None:
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(id=rollout.id)
        if locked.status not in (RolloutStatus.CANARY, RolloutStatus.PROGRESSING):
            return
        started = locked.started_at or now
        window = timedelta(seconds=locked.ledger_window_s)
        LedgerEntry.objects.get_or_create(
            rollout=locked,
            defaults={
                "projection": locked.change.projection,
                "slo": {k: locked.gates.get(k) for k in ("ttft_p95_s", "tpot_p95_s")},
                "window_s": locked.ledger_window_s,
                "before_start": started - window,
                "before_end": started,
                "after_start": now,
                "after_end": now + window,
            },
        )
        count = locked.targets.count()
        transition(
            locked.id,
            RolloutStatus.DONE,
            why=f"all {count} node(s) verified; the ledger measures "
            f"{locked.ledger_window_s} s from now",
            fields={"outcome": "applied to every node"},
        )
