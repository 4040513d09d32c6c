"""Rollout pages: the list, propose (operator+), one rollout with its actions (admin), the ledger.

Views check the role, turn the form into the service's arguments and call one service; the
service validates (its errors name the field) and checks the permission again. Actions on a
rollout are POSTs to its page with `action` = approve | start | pause | resume | abort |
rollback: admins only (role_required answers 403 to anyone else). While a rollout is not over
its page polls `status.json` (static/js/rollout.js) and updates the nodes and audit trail in place.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import capfirst

from advisor.engine.strategies.registry import names as strategy_names
from advisor.models import ACTIVE_STATUSES, Assessment
from advisor.selectors.rollouts import ledger_list, rollout_get, rollouts_list
from advisor.services.rollouts import (
    RolloutError,
    rollout_abort,
    rollout_approve,
    rollout_pause,
    rollout_propose,
    rollout_resume,
    rollout_rollback,
    rollout_start,
)
from dashboard.access import role_required
from dashboard.labels import label
from dashboard.selectors.assessments import strategy_label
from dashboard.selectors.rollouts import rollout_node_diffs, rollout_status
from probes.models import ModelDeployment, Node
from probes.roles import ADMIN, OPERATOR, VIEWER

ACTIONS = {
    "approve": rollout_approve,
    "start": rollout_start,
    "pause": rollout_pause,
    "resume": rollout_resume,
    "abort": rollout_abort,
    "rollback": rollout_rollback,
}
STRATEGY_FIELDS = (
    "max_unavailable", "canary_bake_s", "bake_s", "apply_timeout_s", "probe_interval_s",
    "ledger_window_s",
)  # fmt: skip
GATE_FIELDS = ("ttft_p95_s", "tpot_p95_s", "max_error_rate", "min_requests")


@role_required(VIEWER)
def rollout_list(request: HttpRequest) -> HttpResponse:
    rollouts = list(rollouts_list()[:200])
    return render(
        request,
        "dashboard/rollouts.html",
        {
            "rollouts": rollouts,
            "active": [r for r in rollouts if r.status in ACTIVE_STATUSES],
            "flagged": ledger_list().filter(flagged=True).count(),
        },
    )


def _json_field(post: Any, name: str, field: str) -> Any:
    raw = (post.get(name) or "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RolloutError(field, f"not valid JSON: {exc}") from exc


def _number_field(post: Any, name: str, field: str) -> float | int | None:
    raw = (post.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise RolloutError(field, f"expected a number, got {raw!r}") from exc
    return int(value) if value.is_integer() else value


def _propose_args(post: Any) -> dict[str, Any]:
    """The form, as `rollout_propose` arguments (errors name the service's field)."""
    nodes = []
    for raw in post.getlist("nodes"):
        if not raw.isdigit():
            raise RolloutError("nodes", f"not a node id: {raw!r}")
        nodes.append(int(raw))
    strategy = {
        name: value
        for name in STRATEGY_FIELDS
        if (value := _number_field(post, name, f"strategy.{name}")) is not None
    }
    gates = {
        name: value
        for name in GATE_FIELDS
        if (value := _number_field(post, f"gate_{name}", f"gates.{name}")) is not None
    }
    deployment = (post.get("deployment") or "").strip()
    args: dict[str, Any] = {
        "nodes": nodes or None,
        "deployment_id": int(deployment) if deployment.isdigit() else None,
        "strategy": strategy,
        "gates": gates or None,
        "reason": post.get("reason") or "",
    }
    if post.get("source") == "recommendation":
        assessment = _number_field(post, "assessment", "recommendation.assessment")
        args["recommendation"] = {
            "assessment": assessment,
            "deployment": args["deployment_id"],
            "strategy": (post.get("strategy_name") or "").strip(),
        }
    else:
        change: dict[str, Any] = {
            "title": post.get("title") or "",
            "engine_args": _json_field(post, "engine_args", "change.engine_args") or {},
            "model_path": (post.get("model_path") or "").strip(),
        }
        replicas = _number_field(post, "replicas", "change.replicas")
        if replicas is not None:
            change["replicas"] = replicas
        for name in ("autoscaling", "projection"):
            value = _json_field(post, name, f"change.{name}")
            if value is not None:
                change[name] = value
        args["change"] = change
    return args


# The service names fields as the API does ("recommendation.deployment"); the form says them
# as its labels do and marks that input. Longest matching prefix wins.
FIELD_LABELS = {
    "nodes": ("nodes", "Nodes"),
    "deployment": ("deployment", "Deployment"),
    "recommendation": ("strategy_name", "Recommendation"),
    "recommendation.assessment": ("assessment", "Assessment"),
    "recommendation.deployment": ("deployment", "Deployment"),
    "recommendation.strategy": ("strategy_name", "Strategy"),
    "recommendation.engine_args": ("strategy_name", "The recommendation's engine args"),
    "change": ("title", "Change"),
    "change.title": ("title", "Title"),
    "change.engine_args": ("engine_args", "Engine args"),
    "change.model_path": ("model_path", "Model path"),
    "change.replicas": ("replicas", "Replicas"),
    "change.autoscaling": ("autoscaling", "Autoscaling manifest"),
    "change.projection": ("projection", "Projection"),
    "projection": ("projection", "Projection"),
    "reason": ("reason", "Why"),
    **{f"strategy.{n}": (n, capfirst(label(n))) for n in STRATEGY_FIELDS},
    **{f"gates.{n}": (f"gate_{n}", f"Gate {label(n)}") for n in GATE_FIELDS},
}


def form_error(field: str, message: str) -> tuple[str, str]:
    """(the form input to mark, the error as the form says it) for a service error."""
    prefixes = [field[:i] for i, ch in enumerate(field) if ch in ".["] + [field]
    known = [p for p in prefixes if p in FIELD_LABELS]
    if not known:
        return "", f"{field}: {message}"
    key = known[-1]
    name, label = FIELD_LABELS[key]
    detail = field[len(key) :].lstrip(".")
    return name, f"{label}{f' ({detail})' if detail else ''}: {message}"


FORM_FIELDS = (
    "source", "title", "engine_args", "model_path", "replicas", "autoscaling", "projection",
    "deployment", "assessment", "strategy_name", "reason",
)  # fmt: skip


def _form_values(data: Any) -> dict[str, Any]:
    """What the form shows again: every field (empty when absent); `?strategy=` prefills."""
    values: dict[str, Any] = {name: data.get(name, "") for name in FORM_FIELDS}
    values["strategy_name"] = values["strategy_name"] or data.get("strategy", "")
    if values["assessment"] and not values["source"]:
        values["source"] = "recommendation"
    values["nodes"] = data.getlist("nodes")
    return values


def _recent_assessments() -> list[Assessment]:
    return list(Assessment.objects.filter(status="completed").select_related("cluster")[:20])


def strategy_options(assessments: list[Assessment], form: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, label) of the recommendations the chosen assessment has: its plan, then each
    strategy it has a result for (for the chosen deployment, when one is); with no assessment
    chosen, every strategy. A value posted that is not among them stays, so the service's
    refusal names what was chosen."""
    chosen = next((a for a in assessments if str(a.pk) == form["assessment"]), None)
    names: list[str] = list(strategy_names())
    if chosen is not None:
        by_deployment = chosen.strategies or {}
        raw = str(form["deployment"])
        deployment = ModelDeployment.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
        picked = [by_deployment.get(deployment.served_name, {})] if deployment else []
        results = picked or list(by_deployment.values())
        have = {name for r in results if isinstance(r, dict) for name in r}
        names = [name for name in names if name in have]
    options = [("plan", "the plan (every strategy it uses)")]
    options += [(name, strategy_label(name)) for name in names]
    wanted = form["strategy_name"]
    if wanted and wanted not in {value for value, _ in options}:
        options.append((wanted, wanted))
    return options


@role_required(OPERATOR)
def rollout_new(request: HttpRequest) -> HttpResponse:
    """GET: the proposal form (prefilled from ?assessment=&deployment=&strategy=); POST: propose."""
    errors: list[str] = []
    invalid = ""
    status = 200
    if request.method == "POST":
        try:
            rollout = rollout_propose(user=request.user, **_propose_args(request.POST))
        except RolloutError as exc:
            invalid, error = form_error(exc.field, exc.message)
            errors.append(error)
            status = exc.status
        else:
            messages.success(request, f"Rollout #{rollout.id} proposed; an admin starts it.")
            return redirect("dashboard:rollout", rollout_id=rollout.id)
    form = _form_values(request.POST if request.method == "POST" else request.GET)
    assessments = _recent_assessments()
    posted = request.POST if request.method == "POST" else {}
    return render(
        request,
        "dashboard/rollout_new.html",
        {
            "errors": errors,
            "invalid": invalid,
            "form": form,
            "nodes": Node.objects.select_related("cluster"),
            "deployments": ModelDeployment.objects.select_related("cluster"),
            "assessments": assessments,
            "strategy_options": strategy_options(assessments, form),
            "strategy_fields": [
                {"name": n, "label": label(n), "value": posted.get(n, "")} for n in STRATEGY_FIELDS
            ],
            "gate_fields": [
                {"name": f"gate_{n}", "label": label(n), "value": posted.get(f"gate_{n}", "")}
                for n in GATE_FIELDS
            ],
        },
        status=status,
    )


@role_required(VIEWER, post=ADMIN)
def rollout_detail(request: HttpRequest, rollout_id: int) -> HttpResponse:
    rollout = rollout_get(rollout_id=rollout_id)
    if rollout is None:
        raise Http404(f"no rollout {rollout_id}")
    if request.method == "POST":
        action = ACTIONS.get(request.POST.get("action", ""))
        if action is None:
            messages.error(
                request, "action: expected approve, start, pause, resume, abort or rollback"
            )
        else:
            try:
                action(user=request.user, rollout_id=rollout.id, note=request.POST.get("note", ""))
            except RolloutError as exc:
                if exc.status == 403:
                    return render(request, "403.html", {"exception": exc.message}, status=403)
                messages.error(request, f"{exc.field}: {exc.message}")
            else:
                messages.success(request, f"{request.POST['action']}: done")
        return redirect(reverse("dashboard:rollout", kwargs={"rollout_id": rollout.id}))
    events = list(rollout.events.select_related("target__node"))
    targets = list(rollout.targets.all())
    return render(
        request,
        "dashboard/rollout_detail.html",
        {
            "rollout": rollout,
            "targets": targets,
            "node_diffs": rollout_node_diffs(rollout=rollout, targets=targets),
            "events": events,
            "ledger": getattr(rollout, "ledger", None),
            "can_act": not rollout.terminal,
            # Approve is a step only when four-eyes approval is on (the service's check).
            "approval_required": bool(getattr(settings, "ROLLOUT_SECOND_APPROVER", False)),
            "live": None if rollout.terminal else rollout_status(rollout=rollout),
            "change_json": json.dumps(rollout.change.node_config(), indent=2),
        },
    )


@role_required(VIEWER)
def rollout_status_json(request: HttpRequest, rollout_id: int) -> JsonResponse:
    """State, current step, per-node status and the latest audit events, polled by the page."""
    rollout = rollout_get(rollout_id=rollout_id)
    if rollout is None:
        raise Http404(f"no rollout {rollout_id}")
    return JsonResponse(rollout_status(rollout=rollout))


@role_required(VIEWER)
def rollout_ledger(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/rollout_ledger.html", {"entries": list(ledger_list()[:200])})
