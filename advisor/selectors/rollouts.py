"""Reads for rollouts: lists and details as JSON (API) and rows (dashboard), the ledger."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from advisor.models import LedgerEntry, Rollout, RolloutTarget


def rollouts_list() -> QuerySet[Rollout]:
    return Rollout.objects.select_related(
        "change", "change__deployment", "created_by", "started_by", "approved_by"
    ).prefetch_related("targets__node")


def rollout_get(*, rollout_id: int) -> Rollout | None:
    return rollouts_list().filter(id=rollout_id).first()


def ledger_list() -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.select_related("rollout", "rollout__change").order_by(
        "-created_at", "-id"
    )


def _user(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def target_json(target: RolloutTarget) -> dict[str, Any]:
    observed = target.node.observed_config or {}
    return {
        "node": target.node.hostname,
        "node_id": target.node_id,
        "position": target.position,
        "batch": target.batch,
        "canary": target.batch == 0,
        "status": target.status,
        "desired_generation": target.desired_generation,
        "rollback_generation": target.rollback_generation,
        "previous_config": target.previous_config,
        "applied_at": _when(target.applied_at),
        "bake_started_at": _when(target.bake_started_at),
        "verified_at": _when(target.verified_at),
        "gate_results": target.gate_results,
        "error": target.error,
        "node_state": observed.get("state"),
        "node_applied_generation": observed.get("applied_generation"),
    }


def ledger_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "rollout": entry.rollout_id,
        "status": entry.status,
        "projection": entry.projection,
        "slo": entry.slo,
        "window_s": entry.window_s,
        "before_window": [_when(entry.before_start), _when(entry.before_end)],
        "after_window": [_when(entry.after_start), _when(entry.after_end)],
        "before": entry.before,
        "after": entry.after,
        "realized": entry.realized,
        "flagged": entry.flagged,
        "flags": entry.flags,
        "notes": entry.notes,
        "measured_at": _when(entry.measured_at),
    }


def rollout_json(rollout: Rollout, *, events: bool = False) -> dict[str, Any]:
    change = rollout.change
    data: dict[str, Any] = {
        "id": rollout.id,
        "status": rollout.status,
        "paused": rollout.paused,
        "reason": rollout.reason,
        "outcome": rollout.outcome,
        "change": {
            "id": change.id,
            "title": change.title,
            "source": change.source,
            "assessment": change.assessment_id,
            "strategy": change.strategy,
            "deployment": change.deployment.served_name if change.deployment else None,
            "engine_args": change.engine_args,
            "model_path": change.model_path,
            "replicas": change.replicas,
            "autoscaling": change.autoscaling,
            "projection": change.projection,
        },
        "strategy": {
            "max_unavailable": rollout.max_unavailable,
            "canary_bake_s": rollout.canary_bake_s,
            "bake_s": rollout.bake_s,
            "apply_timeout_s": rollout.apply_timeout_s,
            "probe_interval_s": rollout.probe_interval_s,
            "ledger_window_s": rollout.ledger_window_s,
        },
        "gates": rollout.gates,
        "created_by": _user(rollout.created_by),
        "created_at": _when(rollout.created_at),
        "approved_by": _user(rollout.approved_by),
        "approved_at": _when(rollout.approved_at),
        "started_by": _user(rollout.started_by),
        "started_at": _when(rollout.started_at),
        "finished_at": _when(rollout.finished_at),
        "targets": [target_json(t) for t in rollout.targets.all()],
    }
    if events:
        data["events"] = [
            {
                "at": _when(e.at),
                "actor": e.actor_label,
                "kind": e.kind,
                "from": e.from_status,
                "to": e.to_status,
                "node": e.target.node.hostname if e.target else None,
                "message": e.message,
                "data": e.data,
            }
            for e in rollout.events.select_related("target__node")
        ]
        ledger = LedgerEntry.objects.filter(rollout=rollout).first()
        data["ledger"] = ledger_json(ledger) if ledger else None
    return data
