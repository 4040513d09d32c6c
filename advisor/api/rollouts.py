"""Rollout API: propose and list rollouts, read one with its audit trail, act on it, the ledger.

Thin views: check the role, call one service (errors name the field), respond. Any role may
read; operators propose (`advisor.propose_rollout`); only admins approve, start, pause,
resume, abort and roll back (each view's `required_role`, checked before anything else, and
the permission checked again by the service).

    POST /api/v1/rollouts/  {"change": {"title", "engine_args", "model_path", "replicas",
                             "autoscaling", "projection"}  | "recommendation": {"assessment",
                             "deployment", "strategy"},  "nodes": [ids] | "deployment": id,
                             "strategy": {"max_unavailable", "canary_bake_s", "bake_s",
                             "apply_timeout_s", "probe_interval_s", "ledger_window_s"},
                             "gates": {"ttft_p95_s", "tpot_p95_s", "max_error_rate",
                             "min_requests"}, "reason"}
    POST /api/v1/rollouts/<id>/start/   {"note": "why"}   (approve, pause, resume, abort,
                                                           rollback alike)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from advisor.api.permissions import HasRequiredRole
from advisor.models import Rollout
from advisor.selectors.rollouts import (
    ledger_json,
    ledger_list,
    rollout_get,
    rollout_json,
    rollouts_list,
)
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
from advisor.text import json_text_problem
from probes.roles import ADMIN, OPERATOR, VIEWER

LIST_LIMIT = 200
PROPOSE_FIELDS = frozenset(
    {"change", "recommendation", "nodes", "deployment", "strategy", "gates", "reason"}
)


# Each view below declares its own `required_role`. No docstring: drf-spectacular would give
# it to them all as their description.
class _RolloutView(APIView):
    permission_classes = [HasRequiredRole]
    denied_message = "your role may not do this"


def _errors(error: RolloutError) -> Response:
    return Response(
        {"errors": [{"field": error.field, "message": error.message}]}, status=error.status
    )


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.data
    except ParseError as exc:
        raise RolloutError("(body)", f"not valid JSON: {exc.detail}") from exc
    if data in (None, "") or (hasattr(data, "keys") and not data):
        return {}
    if not isinstance(data, dict):
        raise RolloutError("(body)", "expected a JSON object")
    unstorable = json_text_problem(data)
    if unstorable is not None:
        raise RolloutError(*unstorable)
    return data


class RolloutErrorDoc(serializers.Serializer[Any]):
    errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]


class RolloutListView(_RolloutView):
    required_role = {"GET": VIEWER, "POST": OPERATOR}

    @extend_schema(operation_id="rollouts_list", responses={200: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        return Response([rollout_json(r) for r in rollouts_list()[:LIST_LIMIT]])

    @extend_schema(
        operation_id="rollouts_propose",
        request=None,
        responses={
            201: OpenApiResponse(),
            400: RolloutErrorDoc,
            403: RolloutErrorDoc,
            409: RolloutErrorDoc,
        },
    )
    def post(self, request: Request) -> Response:
        try:
            data = _body(request)
            unknown = sorted(set(data) - PROPOSE_FIELDS)
            if unknown:
                raise RolloutError(unknown[0], "unknown field")
            rollout = rollout_propose(
                user=request.user,
                nodes=data.get("nodes"),
                deployment_id=data.get("deployment"),
                change=data.get("change"),
                recommendation=data.get("recommendation"),
                strategy=data.get("strategy"),
                gates=data.get("gates"),
                reason=data.get("reason") or "",
            )
        except RolloutError as exc:
            return _errors(exc)
        return Response(rollout_json(rollout), status=201)


class RolloutDetailView(_RolloutView):
    required_role = {"GET": VIEWER, "POST": ADMIN}

    @extend_schema(operation_id="rollouts_retrieve", responses={200: OpenApiResponse()})
    def get(self, request: Request, rollout_id: int) -> Response:
        rollout = rollout_get(rollout_id=rollout_id)
        if rollout is None:
            return _errors(RolloutError("rollout", f"no rollout {rollout_id}", status=404))
        return Response(rollout_json(rollout, events=True))


Action = Callable[..., Rollout]


class _ActionView(_RolloutView):
    required_role = {"GET": ADMIN, "POST": ADMIN}
    # Not `action`: DRF and drf-spectacular read that attribute as a ViewSet action's name.
    service: Action

    def post(self, request: Request, rollout_id: int) -> Response:
        try:
            data = _body(request)
            note = data.get("note") or ""
            if not isinstance(note, str) or len(note) > 2000:
                raise RolloutError("note", "expected text of at most 2000 characters")
            rollout = type(self).service(user=request.user, rollout_id=rollout_id, note=note)
        except RolloutError as exc:
            return _errors(exc)
        fresh = rollout_get(rollout_id=rollout.id)
        assert fresh is not None
        return Response(rollout_json(fresh, events=True))


def _action_view(name: str, action: Action, summary: str) -> type[_ActionView]:
    def post(self: _ActionView, request: Request, rollout_id: int) -> Response:
        return _ActionView.post(self, request, rollout_id)

    documented = extend_schema(
        operation_id=f"rollouts_{name}",
        summary=summary,
        request=None,
        responses={
            200: OpenApiResponse(), 403: RolloutErrorDoc, 404: RolloutErrorDoc,
            409: RolloutErrorDoc,
        },
    )(post)  # fmt: skip
    return type(
        f"Rollout{name.title()}View",
        (_ActionView,),
        {"service": staticmethod(action), "post": documented, "__doc__": summary},
    )


ApproveView = _action_view("approve", rollout_approve, "Approve as the second admin")
StartView = _action_view("start", rollout_start, "Start: canary first, then batches")
PauseView = _action_view("pause", rollout_pause, "Pause before the next batch")
ResumeView = _action_view("resume", rollout_resume, "Resume a paused rollout")
AbortView = _action_view("abort", rollout_abort, "Abort: touch no further node")
RollbackView = _action_view("rollback", rollout_rollback, "Restore every touched node")


class LedgerListView(_RolloutView):
    required_role = {"GET": VIEWER, "POST": ADMIN}

    @extend_schema(operation_id="rollout_ledger_list", responses={200: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        return Response([ledger_json(e) for e in ledger_list()[:LIST_LIMIT]])
