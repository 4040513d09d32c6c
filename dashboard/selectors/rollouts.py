"""A rollout as its page shows it: each node's vLLM args diff, and the live status it polls.

- Node diffs: per target node, the config it runs beside the rollout's change. "Runs" is the
  restore point once the node was touched (what it ran before this rollout: the service
  stores it when it writes the new desired config), else what the node's agent reports it
  runs, else what it was last told to run: the same order the service takes its restore
  point in. The change replaces the node's engine args wholesale (the controller runs its
  base args plus exactly the change's), so a flag only the node has is "removed".
- Proposal links: the deployment ids an assessment page links its "propose" buttons with.
- Status: what `static/js/rollout.js` polls while the rollout is not over (state, current
  step, each node's status and gates, the latest audit events), as plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import dateformat, timezone

from advisor.models import Rollout, RolloutEvent, RolloutStatus, RolloutTarget, TargetStatus
from dashboard.selectors.config_diff import ArgLine, args_diff
from probes.models import ModelDeployment

# How many of the latest audit events the status carries (the page shows them all on load).
STATUS_EVENTS = 20
EVENT_TIME_FORMAT = "Y-m-d H:i:s"  # as the page's audit trail prints `at`


@dataclass(frozen=True)
class NodeDiff:
    """One target node's config beside the change; `source` says where "before" came from."""

    node_id: int
    hostname: str
    source: str
    args: tuple[ArgLine, ...]
    model_path: tuple[str | None, str] | None
    replicas: tuple[int | None, int] | None


def _config_before(target: RolloutTarget) -> tuple[dict[str, Any], str]:
    if target.previous_config is not None:
        return target.previous_config, "before this rollout (its restore point)"
    observed = (target.node.observed_config or {}).get("config")
    if observed:
        return observed, "reported by the node"
    desired = (target.node.desired_config or {}).get("config")
    if desired:
        return desired, "desired (the node has not reported what it runs)"
    return {}, "not known (the node has reported no config)"


def rollout_node_diffs(*, rollout: Rollout, targets: list[RolloutTarget]) -> list[NodeDiff]:
    """Per target (in rollout order): its config before the change vs the change."""
    change = rollout.change
    diffs = []
    for target in targets:
        before, source = _config_before(target)
        replicas = before.get("replicas")
        diffs.append(
            NodeDiff(
                node_id=target.node_id,
                hostname=target.node.hostname,
                source=source,
                args=args_diff(
                    before.get("engine_args") or {},
                    {"engine_args": change.engine_args},
                    replaces=True,
                ),
                model_path=(before.get("model"), change.model_path) if change.model_path else None,
                replicas=(
                    (replicas if isinstance(replicas, int) else None, change.replicas)
                    if change.replicas is not None
                    else None
                ),
            )
        )
    return diffs


def _current_batch(rollout: Rollout, targets: list[RolloutTarget]) -> int | None:
    """The batch being applied or baked, else the next one waiting (None: none is)."""
    if rollout.status == RolloutStatus.CANARY:
        return 0
    if rollout.status != RolloutStatus.PROGRESSING:
        return None
    busy = [t.batch for t in targets if t.status in (TargetStatus.APPLYING, TargetStatus.BAKING)]
    waiting = [t.batch for t in targets if t.status == TargetStatus.PENDING]
    batches = busy or waiting
    return min(batches) if batches else None


def _step(rollout: Rollout, batch: int | None, batches: int) -> str:
    if rollout.terminal:
        return rollout.get_status_display()
    if rollout.status == RolloutStatus.PENDING:
        return "waiting for an admin to start it"
    if rollout.status == RolloutStatus.ROLLING_BACK:
        return "restoring the nodes it touched"
    if batch is None:
        return "all batches applied"
    text = "canary" if batch == 0 else f"batch {batch} of {batches}"
    return f"{text} (paused)" if rollout.paused else text


def target_status_json(target: RolloutTarget) -> dict[str, Any]:
    results = (target.gate_results or {}).get("results") or []
    return {
        "node_id": target.node_id,
        "node": target.node.hostname,
        "batch": target.batch,
        "role": "canary" if target.batch == 0 else f"batch {target.batch}",
        "status": target.status,
        "status_label": target.get_status_display(),
        "desired_generation": target.desired_generation,
        "rollback_generation": target.rollback_generation,
        "gates": [
            {"name": g.get("name"), "passed": bool(g.get("passed")), "detail": g.get("detail", "")}
            for g in results
        ],
        "error": target.error,
    }


def event_json(event: RolloutEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "at_text": dateformat.format(timezone.localtime(event.at), EVENT_TIME_FORMAT),
        "actor": event.actor_label,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "node": event.target.node.hostname if event.target is not None else "",
        "message": event.message,
    }


def rollout_status(*, rollout: Rollout) -> dict[str, Any]:
    """The page's live part: state, current step, per-node status, the latest audit events."""
    targets = list(rollout.targets.select_related("node").order_by("position"))
    batches = max((t.batch for t in targets), default=0)
    batch = _current_batch(rollout, targets)
    latest = list(
        rollout.events.select_related("target__node").order_by("-at", "-id")[:STATUS_EVENTS]
    )
    return {
        "status": rollout.status,
        "status_label": rollout.get_status_display(),
        "paused": rollout.paused,
        "done": rollout.terminal,
        "outcome": rollout.outcome,
        "step": _step(rollout, batch, batches),
        "batch": batch,
        "batches": batches,
        "targets": [target_status_json(t) for t in targets],
        "events": [event_json(e) for e in reversed(latest)],
    }


def deployment_ids(*, cluster_id: int) -> dict[str, int]:
    """{served name: id} of a cluster's deployments (an assessment names them by served name)."""
    return dict(
        ModelDeployment.objects.filter(cluster_id=cluster_id).values_list("served_name", "id")
    )
