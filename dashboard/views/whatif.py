"""The what-if playground: change an assessment's inputs and simulate again (operator+).

The form lists every assessed deployment (GPU kind, GPUs per replica, replicas, SLOs), a
price per GPU kind and the strategies; the view turns the posted fields into the `changes`
object of `advisor.services.whatif` (errors name the field the same way the service does:
`deployments.chat.replicas`), and calls one service. The run is simulated on the `sim` queue;
its page polls `progress.json` and shows the answer beside the assessment's.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from advisor.models import Assessment, AssessmentStatus
from advisor.services.whatif import SLO_KEYS, WhatIfInputError, whatif_choices
from dashboard.access import role_required
from dashboard.figures import assessments as figures
from dashboard.models import WhatIf, WhatIfStatus
from dashboard.selectors.assessments import (
    assessment_view,
    combination_label,
    finite,
    plan_view,
)
from dashboard.whatif import whatif_create
from probes.roles import OPERATOR, VIEWER


def _number(post: Any, name: str, field: str, *, whole: bool = False) -> float | int | None:
    raw = (post.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise WhatIfInputError(field, f"expected a number, got {raw!r}") from None
    if whole:
        if not value.is_integer():
            raise WhatIfInputError(field, f"expected a whole number, got {raw!r}")
        return int(value)
    return value


def changes_from_post(post: Any, choices: dict[str, Any]) -> dict[str, Any]:
    """The posted form as `changes` (only what differs is a change; the service decides)."""
    deployments: dict[str, Any] = {}
    for index, item in enumerate(choices["deployments"]):
        name = item["name"]
        field = f"deployments.{name}"
        entry: dict[str, Any] = {}
        hardware = (post.get(f"d{index}-hardware") or "").strip()
        if hardware:
            entry["hardware"] = hardware
        for key in ("tensor_parallel", "replicas"):
            value = _number(post, f"d{index}-{key}", f"{field}.{key}", whole=True)
            if value is not None:
                entry[key] = value
        slo = {
            key: value
            for key in SLO_KEYS
            if (value := _number(post, f"d{index}-{key}", f"{field}.slo.{key}")) is not None
        }
        if slo:
            entry["slo"] = slo
        if entry:
            deployments[name] = entry
    prices = {}
    for gpu in choices["gpu_kinds"]:
        value = _number(post, f"price-{gpu['name']}", f"prices.{gpu['name']}")
        if value is not None:
            prices[gpu["name"]] = value
    return {
        "deployments": deployments,
        "prices": prices,
        "strategies": [name for name in choices["strategies"] if post.get(f"s-{name}") == "on"],
    }


def _form_rows(choices: dict[str, Any], post: Any | None) -> dict[str, Any]:
    """The form's values: what was posted, else the assessment's own."""
    rows = []
    for index, item in enumerate(choices["deployments"]):
        values = {
            "hardware": item["hardware"],
            "tensor_parallel": item["tensor_parallel"],
            "replicas": item["replicas"],
            **item["slo"],
        }
        if post is not None:
            for key in values:
                values[key] = post.get(f"d{index}-{key}", "")
        rows.append({"index": index, "item": item, "values": values})
    prices = []
    used = {d["hardware"] for d in choices["deployments"]} | set(choices["prices"])
    for gpu in choices["gpu_kinds"]:
        stored = choices["prices"].get(gpu["name"])
        value = stored["usd_per_gpu_hour"] if stored else gpu["usd_per_gpu_hour"]
        if post is not None:
            value = post.get(f"price-{gpu['name']}", "")
        prices.append({"gpu": gpu, "stored": stored, "value": value, "used": gpu["name"] in used})
    enabled = set(choices["enabled"])
    if post is not None:
        enabled = {name for name in choices["strategies"] if post.get(f"s-{name}") == "on"}
    strategies = [
        {"name": name, "label": combination_label([name]), "on": name in enabled}
        for name in choices["strategies"]
    ]
    return {"rows": rows, "prices": prices, "strategies": strategies}


@role_required(VIEWER, post=OPERATOR)
def whatif_playground(request: HttpRequest, assessment_id: int) -> HttpResponse:
    """GET: the assessment's what-ifs and (operators) the form; POST: start a what-if."""
    assessment = get_object_or_404(Assessment.objects.select_related("cluster"), pk=assessment_id)
    usable = assessment.status == AssessmentStatus.COMPLETED and bool(assessment.scenario)
    choices = whatif_choices(assessment=assessment) if usable else None
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        if choices is None:
            errors.append(f"assessment: #{assessment.pk} has no finished scenario to change")
        else:
            try:
                changes = changes_from_post(request.POST, choices)
                whatif = whatif_create(assessment=assessment, changes=changes, user=request.user)
            except WhatIfInputError as exc:
                errors.append(f"{exc.field}: {exc.message}")
            else:
                messages.success(request, f"What-if #{whatif.pk} started.")
                return redirect("dashboard:whatif", whatif_id=whatif.pk)
        status = 400
    posted = request.POST if request.method == "POST" else None
    form = _form_rows(choices, posted) if choices else None
    return render(
        request,
        "dashboard/whatif_playground.html",
        {
            "assessment": assessment,
            "choices": choices,
            "form": form,
            "errors": errors,
            "whatifs": list(assessment.whatifs.select_related("created_by")[:50]),
        },
        status=status,
    )


@role_required(VIEWER)
def whatif_detail(request: HttpRequest, whatif_id: int) -> HttpResponse:
    whatif = get_object_or_404(
        WhatIf.objects.select_related("assessment__cluster", "created_by"), pk=whatif_id
    )
    original = assessment_view(whatif.assessment)
    done = whatif.status == WhatIfStatus.COMPLETED
    view = plan_view(plan=whatif.plan or {}, strategies=whatif.strategies or {}) if done else None
    context: dict[str, Any] = {
        "whatif": whatif,
        "assessment": whatif.assessment,
        "original": original,
        "view": view,
        "running": whatif.status in (WhatIfStatus.QUEUED, WhatIfStatus.RUNNING),
    }
    if view is not None:
        context.update(
            compare=figures.compare_plans(original, view, labels=("assessment", "what-if")),
            waterfall=figures.waterfall(view, title="What-if: from today's cost to the plan"),
            combination_rows=[
                {**row, "label": combination_label(row.get("strategies") or ())}
                for row in view.combinations
            ],
            originals={d.name: d for d in original.deployments},
            plan_delta=_delta(view.fleet_plan, original.fleet_plan),
        )
    return render(request, "dashboard/whatif.html", context)


def _delta(after: dict[str, Any], before: dict[str, Any]) -> float | None:
    new, old = finite(after.get("usd_per_month")), finite(before.get("usd_per_month"))
    return None if new is None or old is None else new - old


@role_required(VIEWER)
def whatif_progress(request: HttpRequest, whatif_id: int) -> JsonResponse:
    row = (
        WhatIf.objects.filter(pk=whatif_id)
        .values("status", "progress", "progress_message", "error")
        .first()
    )
    if row is None:
        raise Http404(f"no what-if {whatif_id}")
    return JsonResponse(
        {
            "status": row["status"],
            "progress": row["progress"],
            "message": row["progress_message"],
            "error": row["error"],
            "done": row["status"] in (WhatIfStatus.COMPLETED, WhatIfStatus.FAILED),
        }
    )
