"""Writes for rollouts: propose, approve, start, pause, resume, abort, roll back; the audit.

Every transition goes through `_transition`, which checks the state machine
(`advisor.rollouts.transitions`), locks the row and writes a `RolloutEvent` (who, when,
why) in the same transaction. Permissions are checked here too (the views check roles
first): operators hold `advisor.propose_rollout`; approving, starting, pausing, aborting and
rolling back need the admin-only permissions of `Rollout.Meta`. With
`settings.ROLLOUT_SECOND_APPROVER` on, a rollout must be approved by an admin other than
its proposer, and started by someone other than its approver (four eyes).

Input errors raise `RolloutError` naming the field and saying what to do; nothing is stored
then, except that an action refused on an existing rollout (start on a node that never
reported, a second approver missing, ...) is written to its audit trail (kind `refused`).
A recommendation proposed for nodes that run one local vLLM process applies its per-replica
part (engine args, model, precision, speculative config); its replicas and autoscaling
become the change's `manual_steps`. A node already
held by another rollout that is not over refuses the proposal with that rollout's number
(a partial unique index closes the race between two concurrent proposals); so does a node
a running controller A/B holds (`advisor.services.ab_controller`; both lock the node rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from advisor.models import (
    ACTIVE_STATUSES,
    SLO_DEFAULTS,
    Assessment,
    ChangeSource,
    ConfigChange,
    DeploymentSlo,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    RolloutTarget,
    TargetStatus,
)
from advisor.rollouts.gates import (
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MIN_REQUESTS,
    GateConfigError,
    GateLimits,
)
from advisor.rollouts.ledger import ProjectionError, check_projection
from advisor.rollouts.recommendation import (
    RecommendationError,
    change_from_recommendation,
    split_replica_part,
)
from advisor.rollouts.transitions import TransitionError, batches, check_transition
from advisor.services.ab_controller import ab_holding_job
from probes.agent.desired import NodeConfig, ProtocolError, check_engine_args
from probes.models import ControllerKind, ModelDeployment, Node

# A node whose agent has not reported for this long is not started on (it may be down).
REPORT_FRESH_S = 120.0
LIMITS = {
    "max_unavailable": (1, 1000),
    "canary_bake_s": (0, 7 * 24 * 3600),
    "bake_s": (0, 7 * 24 * 3600),
    "apply_timeout_s": (30, 24 * 3600),
    "ledger_window_s": (60, 30 * 24 * 3600),
}
STRATEGY_KEYS = frozenset({*LIMITS, "probe_interval_s"})


class RolloutError(ValueError):
    """Invalid input or a refused action; `field` names what was wrong, `status` the HTTP code."""

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _require(user: Any, permission: str, action: str) -> None:
    if not user.has_perm(permission):
        raise RolloutError("(role)", f"{action} needs the {permission} permission", status=403)


def _actor(user: Any) -> tuple[Any, str]:
    if user is None or not getattr(user, "is_authenticated", False):
        return None, "system"
    return user, user.get_username()


def audit(
    rollout: Rollout,
    message: str,
    *,
    user: Any = None,
    kind: str = "note",
    target: RolloutTarget | None = None,
    from_status: str = "",
    to_status: str = "",
    data: Mapping[str, Any] | None = None,
) -> RolloutEvent:
    actor, label = _actor(user)
    return RolloutEvent.objects.create(
        rollout=rollout,
        actor=actor,
        actor_label=label,
        kind=kind,
        target=target,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=dict(data or {}),
    )


def transition(
    rollout_id: int,
    new_status: str,
    *,
    why: str,
    user: Any = None,
    fields: Mapping[str, Any] | None = None,
) -> Rollout:
    """Change a rollout's status (checked, locked, audited) inside the caller's transaction."""
    rollout = Rollout.objects.select_for_update().get(id=rollout_id)
    try:
        check_transition(rollout.status, new_status)
    except TransitionError as exc:
        raise RolloutError("status", str(exc), status=409) from exc
    old = rollout.status
    rollout.status = new_status
    for name, value in (fields or {}).items():
        setattr(rollout, name, value)
    if rollout.terminal:
        rollout.finished_at = timezone.now()
        rollout.targets.filter(active=True).update(active=False)
    rollout.save()
    audit(rollout, why, user=user, kind="transition", from_status=old, to_status=new_status)
    return rollout


# -- propose ---------------------------------------------------------------------------------


def _number(value: Any, field: str, low: float, high: float, *, integer: bool = True) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RolloutError(field, f"expected a number, got {value!r}")
    if integer and int(value) != value:
        raise RolloutError(field, "expected a whole number")
    if not low <= value <= high:
        raise RolloutError(field, f"must be between {low:g} and {high:g}, got {value:g}")
    return int(value) if integer else float(value)


def _strategy(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RolloutError("strategy", "expected an object")
    unknown = sorted(set(raw) - STRATEGY_KEYS)
    if unknown:
        raise RolloutError(f"strategy.{unknown[0]}", "unknown field")
    out = {key: _number(raw[key], f"strategy.{key}", *LIMITS[key]) for key in LIMITS if key in raw}
    if "probe_interval_s" in raw:
        out["probe_interval_s"] = _number(
            raw["probe_interval_s"], "strategy.probe_interval_s", 0, 3600, integer=False
        )
    return out


def _targets(node_ids: Any, deployment: ModelDeployment | None) -> list[Node]:
    if node_ids in (None, []):
        if deployment is None:
            raise RolloutError("nodes", "choose nodes, or a deployment whose nodes to update")
        nodes = list(
            Node.objects.filter(gpus__deployments=deployment).distinct().order_by("hostname")
        )
        if not nodes:
            raise RolloutError(
                "deployment", f"{deployment.served_name} has no GPUs on any node: choose nodes"
            )
        return nodes
    if not isinstance(node_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in node_ids
    ):
        raise RolloutError("nodes", "expected a list of node ids")
    if len(set(node_ids)) != len(node_ids):
        raise RolloutError("nodes", "a node is listed twice")
    found = {node.id: node for node in Node.objects.filter(id__in=node_ids)}
    for i, node_id in enumerate(node_ids):
        if node_id not in found:
            raise RolloutError(f"nodes[{i}]", f"no node with id {node_id}")
    return [found[i] for i in node_ids]  # the order given: the first is the canary


def _gates(raw: Any, deployment: ModelDeployment | None) -> dict[str, Any]:
    if raw is not None and not isinstance(raw, Mapping):
        raise RolloutError("gates", "expected an object")
    slo = DeploymentSlo.objects.filter(deployment=deployment).first() if deployment else None
    values: dict[str, Any] = {}
    defaults: list[str] = []
    for key in ("ttft_p95_s", "tpot_p95_s"):
        own = getattr(slo, key, None) if slo else None
        values[key] = own if own is not None else SLO_DEFAULTS[key]
        if own is None:
            defaults.append(key)
    values.update(max_error_rate=DEFAULT_MAX_ERROR_RATE, min_requests=DEFAULT_MIN_REQUESTS)
    defaults += ["max_error_rate", "min_requests"]
    for key, value in (raw or {}).items():
        values[key] = value
        if key in defaults:
            defaults.remove(key)
    unknown = sorted(
        set(raw or {}) - {"ttft_p95_s", "tpot_p95_s", "max_error_rate", "min_requests"}
    )
    if unknown:
        raise RolloutError(f"gates.{unknown[0]}", "unknown field")
    try:
        limits = GateLimits.from_json(values)
    except GateConfigError as exc:
        field, _, message = str(exc).partition(": ")
        raise RolloutError(field, message) from exc
    return {**limits.to_json(), "defaults": defaults}


def _id(value: Any, field: str, what: str, hint: str = "") -> int:
    if value in (None, ""):
        raise RolloutError(field, f"choose the {what} whose recommendation to apply{hint}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RolloutError(field, f"expected the id of an {what}, got {value!r}")
    return value


def _recommended(assessment: Assessment) -> list[str]:
    """The deployments an assessment's plan has a change for, by name."""
    return [
        str(d.get("deployment"))
        for d in (assessment.plan or {}).get("deployments", [])
        if d.get("status") == "ok"
    ]


def _results_for(assessment: Assessment, name: str) -> list[str]:
    have = ["plan"] if name in _recommended(assessment) else []
    results = (assessment.strategies or {}).get(name, {})
    return have + sorted(k for k, v in results.items() if isinstance(v, Mapping))


def _recommendation(raw: Any) -> tuple[dict[str, Any], Assessment, ModelDeployment]:
    if not isinstance(raw, Mapping):
        raise RolloutError("recommendation", "expected {assessment, deployment, strategy}")
    unknown = sorted(set(raw) - {"assessment", "deployment", "strategy"})
    if unknown:
        raise RolloutError(f"recommendation.{unknown[0]}", "unknown field")
    assessment_id = _id(raw.get("assessment"), "recommendation.assessment", "assessment")
    assessment = Assessment.objects.filter(id=assessment_id).first()
    if assessment is None:
        raise RolloutError("recommendation.assessment", f"no assessment {raw.get('assessment')!r}")
    deployment_id = _id(
        raw.get("deployment"),
        "recommendation.deployment",
        "deployment",
        f" (assessment #{assessment.id} has recommendations for "
        f"{', '.join(_recommended(assessment)) or 'no deployment'})",
    )
    deployment = ModelDeployment.objects.filter(
        id=deployment_id, cluster=assessment.cluster
    ).first()
    if deployment is None:
        raise RolloutError(
            "recommendation.deployment",
            f"not a deployment of cluster {assessment.cluster.name}, which assessment "
            f"#{assessment.id} covers: choose one of {', '.join(_recommended(assessment))}",
        )
    strategy = raw.get("strategy")
    if not strategy:
        raise RolloutError(
            "recommendation.strategy",
            "choose the recommendation to apply: plan, or one strategy (batching, "
            "quantization, speculative, ...)",
        )
    if strategy == "plan":
        entries = [
            d
            for d in (assessment.plan or {}).get("deployments", [])
            if d.get("deployment") == deployment.served_name
        ]
        result = entries[0] if entries else None
    else:
        result = (assessment.strategies or {}).get(deployment.served_name, {}).get(strategy)
    if not isinstance(result, Mapping):
        raise RolloutError(
            "recommendation.strategy",
            f"assessment #{assessment.id} has no {strategy!r} result for "
            f"{deployment.served_name}: choose one it has ("
            f"{', '.join(_results_for(assessment, deployment.served_name)) or 'none'})",
        )
    try:
        change = change_from_recommendation(
            result, source=f"assessment #{assessment.id} {strategy} for {deployment.served_name}"
        )
        # The worker parses it again at apply time: refuse here what a node would refuse.
        check_engine_args(change["engine_args"], "recommendation.engine_args")
    except RecommendationError as exc:
        raise RolloutError("recommendation", str(exc)) from exc
    except ProtocolError as exc:
        raise RolloutError(exc.field, exc.message) from exc
    return {**change, "strategy": str(strategy)}, assessment, deployment


def rollout_propose(
    *,
    user: Any,
    nodes: Any = None,
    deployment_id: Any = None,
    change: Mapping[str, Any] | None = None,
    recommendation: Mapping[str, Any] | None = None,
    strategy: Any = None,
    gates: Any = None,
    reason: str = "",
) -> Rollout:
    """Store a pending rollout of a change (by hand, or from a recommendation) to nodes."""
    _require(user, "advisor.propose_rollout", "proposing a rollout")
    assessment = None
    deployment = None
    if (change is None) == (recommendation is None):
        raise RolloutError("change", "give either a change or a recommendation")
    if recommendation is not None:
        fields, assessment, deployment = _recommendation(recommendation)
        source = ChangeSource.RECOMMENDATION
    else:
        fields = _change_fields(change)
        source = ChangeSource.MANUAL
    if deployment is None and deployment_id not in (None, ""):
        deployment = ModelDeployment.objects.filter(id=deployment_id).first()
        if deployment is None:
            raise RolloutError("deployment", f"no deployment with id {deployment_id!r}")
    targets = _targets(nodes, deployment)
    fields["manual_steps"] = []
    local = [n.hostname for n in targets if n.controller_kind != ControllerKind.KUBERNETES]
    if local and (fields.get("replicas") is not None or fields.get("autoscaling")):
        if source == ChangeSource.MANUAL:
            raise RolloutError(
                "change.replicas" if fields.get("replicas") is not None else "change.autoscaling",
                f"{', '.join(local)} run(s) one local vLLM process (no replicas to scale): "
                "leave replicas and autoscaling empty and scale by hand, or choose nodes with "
                "the kubernetes controller",
            )
        try:
            fields, steps = split_replica_part(
                fields, deployment=deployment.served_name if deployment else "", local_nodes=local
            )
        except RecommendationError as exc:
            raise RolloutError("recommendation", str(exc)) from exc
        fields["manual_steps"] = steps
    options = _strategy(strategy)
    gate_values = _gates(gates, deployment)
    if not isinstance(reason, str) or len(reason) > 2000:
        raise RolloutError("reason", "expected text of at most 2000 characters")
    try:
        with transaction.atomic():
            _refuse_busy_nodes(targets)
            config_change = ConfigChange.objects.create(
                deployment=deployment,
                source=source,
                assessment=assessment,
                created_by=user,
                **fields,
            )
            rollout = Rollout.objects.create(
                change=config_change,
                created_by=user,
                reason=reason,
                gates=gate_values,
                **options,
            )
            for position, (node, batch) in enumerate(
                zip(targets, batches(len(targets), rollout.max_unavailable), strict=True)
            ):
                RolloutTarget.objects.create(
                    rollout=rollout, node=node, position=position, batch=batch
                )
            audit(
                rollout,
                reason or "proposed",
                user=user,
                kind="transition",
                to_status=RolloutStatus.PENDING,
                data={"nodes": [n.hostname for n in targets]},
            )
    except IntegrityError as exc:
        # Another proposal took one of the nodes between our check and our insert.
        _refuse_busy_nodes(targets)
        raise RolloutError("nodes", "a node was just taken by another rollout", status=409) from exc
    return rollout


def _change_fields(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise RolloutError("change", "expected an object")
    known = {"title", "engine_args", "model_path", "replicas", "autoscaling", "projection"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RolloutError(f"change.{unknown[0]}", "unknown field")
    title = raw.get("title") or ""
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise RolloutError("change.title", "required: a title of at most 200 characters")
    model_path = raw.get("model_path") or ""
    if not isinstance(model_path, str) or len(model_path) > 500:
        raise RolloutError("change.model_path", "expected a path or model id (500 characters max)")
    autoscaling = raw.get("autoscaling") or {}
    if autoscaling and (
        not isinstance(autoscaling, Mapping) or autoscaling.get("kind") != "HorizontalPodAutoscaler"
    ):
        raise RolloutError(
            "change.autoscaling", "expected an autoscaling/v2 HorizontalPodAutoscaler manifest"
        )
    try:
        config = NodeConfig.from_json(
            {
                "engine_args": raw.get("engine_args") or {},
                **({"model": model_path} if model_path else {}),
                **({"replicas": raw["replicas"]} if raw.get("replicas") is not None else {}),
            },
            where="change",
        )
        projection = check_projection(raw.get("projection"))
    except (ProtocolError, ProjectionError) as exc:
        raise RolloutError(exc.field, exc.message) from exc
    if not (config.engine_args or model_path or config.replicas is not None or autoscaling):
        raise RolloutError(
            "change", "changes nothing: set engine_args, model_path, replicas or autoscaling"
        )
    return {
        "title": title.strip(),
        "engine_args": dict(config.engine_args),
        "model_path": model_path,
        "replicas": config.replicas,
        "autoscaling": dict(autoscaling),
        "projection": projection,
    }


def _refuse_busy_nodes(nodes: Sequence[Node]) -> None:
    with transaction.atomic():
        # The node rows' lock orders this check against a controller A/B taking the node.
        list(Node.objects.select_for_update().filter(id__in=[n.id for n in nodes]).order_by("id"))
        ab = ab_holding_job(nodes)
    if ab is not None:
        raise RolloutError(
            "nodes",
            f"node {ab.endpoint.node.hostname} is in benchmark A/B #{ab.id}, which switches "
            "its config; wait until it is over or cancel it first",
            status=409,
        )
    busy = (
        RolloutTarget.objects.filter(node__in=nodes, active=True)
        .select_related("node", "rollout")
        .order_by("node__hostname")
    )
    for target in busy:
        raise RolloutError(
            "nodes",
            f"node {target.node.hostname} is already in rollout #{target.rollout_id} "
            f"({target.rollout.status}); wait until it is over or abort it first",
            status=409,
        )


# -- admin actions ---------------------------------------------------------------------------


def _get(rollout_id: Any) -> Rollout:
    rollout = Rollout.objects.filter(id=rollout_id).select_related("change").first()
    if rollout is None:
        raise RolloutError("rollout", f"no rollout {rollout_id!r}", status=404)
    return rollout


@contextmanager
def _refusal_audited(rollout_id: Any, user: Any, action: str) -> Iterator[Rollout]:
    """The rollout; a `RolloutError` raised in the block is written to its audit trail.

    The event is written after the block's own transaction rolled back, so it stays.
    """
    rollout = _get(rollout_id)
    try:
        yield rollout
    except RolloutError as exc:
        audit(
            rollout,
            f"{action} refused: {exc.message}",
            user=user,
            kind="refused",
            data={"action": action, "field": exc.field, "status": exc.status},
        )
        raise


def rollout_approve(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    with _refusal_audited(rollout_id, user, "approve") as rollout:
        _require(user, "advisor.approve_rollout", "approving a rollout")
        with transaction.atomic():
            rollout = Rollout.objects.select_for_update().get(id=rollout.id)
            if rollout.status != RolloutStatus.PENDING:
                raise RolloutError(
                    "status",
                    f"only a pending rollout can be approved (it is {rollout.status})",
                    status=409,
                )
            if rollout.created_by_id == user.id:
                raise RolloutError(
                    "(approver)",
                    "the proposer cannot approve their own rollout: ask another admin",
                    status=403,
                )
            rollout.approved_by, rollout.approved_at = user, timezone.now()
            rollout.save(update_fields=["approved_by", "approved_at"])
            audit(rollout, note or "approved", user=user, kind="approval")
    return rollout


def rollout_start(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    """Start a pending rollout (canary first); the `rollout` queue then advances it.

    A refusal (permission, approver, a node not ready) says what to do and is audited.
    """
    from advisor.tasks.rollout import advance

    with _refusal_audited(rollout_id, user, "start") as rollout:
        _require(user, "advisor.start_rollout", "starting a rollout")
        if getattr(settings, "ROLLOUT_SECOND_APPROVER", False):
            if rollout.approved_by_id is None:
                raise RolloutError(
                    "(approver)",
                    "a second admin must approve this rollout before it starts",
                    status=409,
                )
            if rollout.approved_by_id == user.id:
                raise RolloutError(
                    "(approver)",
                    "the approver cannot also start it (four eyes): ask another admin",
                    status=403,
                )
        _check_nodes_ready(rollout)
        with transaction.atomic():
            rollout = transition(
                rollout.id,
                RolloutStatus.CANARY,
                why=note or "started",
                user=user,
                fields={"started_by": user, "started_at": timezone.now(), "paused": False},
            )
            advance.delay_on_commit(rollout.id)
    return rollout


def _check_nodes_ready(rollout: Rollout) -> None:
    now = timezone.now().timestamp()
    for target in rollout.targets.select_related("node"):
        host = target.node.hostname
        observed = target.node.observed_config or {}
        received = observed.get("received_at")
        if not isinstance(received, int | float):
            raise RolloutError(
                "nodes",
                f"node {host} has never reported a controller state, so nothing would apply "
                f"the change: run its agent with --controller-config (README, Rollouts; on "
                f"the demo, `make demo-node`), wait until the node page shows its controller "
                f"serving, then start again",
                status=409,
            )
        if now - received > REPORT_FRESH_S:
            raise RolloutError(
                "nodes",
                f"node {host} last reported {now - received:.0f} s ago (more than "
                f"{REPORT_FRESH_S:.0f} s): check that its agent runs and reaches this server, "
                "then start again",
                status=409,
            )
        if observed.get("state") != "serving" or not observed.get("healthy"):
            raise RolloutError(
                "nodes",
                f"node {host} is {observed.get('state')}, not serving: starting would take "
                "down more than the rollout allows; wait until it serves again (its agent "
                "restarts vLLM; see its log), or abort and propose without it",
                status=409,
            )


def rollout_pause(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    """Stop before the next batch (a bake in progress still ends, and a failing gate still
    rolls back)."""
    with _refusal_audited(rollout_id, user, "pause"):
        _require(user, "advisor.pause_rollout", "pausing a rollout")
        return _set_paused(user, rollout_id, True, note or "paused")


def rollout_resume(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    from advisor.tasks.rollout import advance

    with _refusal_audited(rollout_id, user, "resume"):
        _require(user, "advisor.pause_rollout", "resuming a rollout")
        with transaction.atomic():
            rollout = _set_paused(user, rollout_id, False, note or "resumed")
            advance.delay_on_commit(rollout.id)
    return rollout


def _set_paused(user: Any, rollout_id: Any, paused: bool, note: str) -> Rollout:
    with transaction.atomic():
        rollout = Rollout.objects.select_for_update().get(id=rollout_id)
        if rollout.status not in (RolloutStatus.CANARY, RolloutStatus.PROGRESSING):
            raise RolloutError(
                "status", f"a {rollout.status} rollout cannot be paused or resumed", status=409
            )
        if rollout.paused == paused:
            raise RolloutError(
                "status", f"it is already {'paused' if paused else 'running'}", status=409
            )
        rollout.paused = paused
        rollout.save(update_fields=["paused"])
        audit(rollout, note, user=user, kind="pause" if paused else "resume")
    return rollout


def rollout_abort(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    """Stop where it stands: no further node is touched, nodes keep what they run now."""
    with _refusal_audited(rollout_id, user, "abort") as found:
        _require(user, "advisor.abort_rollout", "aborting a rollout")
        with transaction.atomic():
            rollout = transition(found.id, RolloutStatus.ABORTED, why=note or "aborted", user=user)
            rollout.targets.filter(status=TargetStatus.PENDING).update(
                status=TargetStatus.UNTOUCHED
            )
    return rollout


def rollout_rollback(*, user: Any, rollout_id: Any, note: str = "") -> Rollout:
    """Restore the previous config on every node this rollout touched."""
    from advisor.services.rollout_steps import begin_rollback
    from advisor.tasks.rollout import advance

    with _refusal_audited(rollout_id, user, "roll back") as rollout:
        _require(user, "advisor.rollback_rollout", "rolling back a rollout")
        if rollout.status not in ACTIVE_STATUSES or rollout.status == RolloutStatus.ROLLING_BACK:
            raise RolloutError(
                "status", f"a {rollout.status} rollout cannot be rolled back", status=409
            )
        with transaction.atomic():
            rollout = begin_rollback(rollout.id, why=note or "rolled back by hand", user=user)
            advance.delay_on_commit(rollout.id)
    return rollout
