"""The what-if playground: change an assessment's inputs and simulate again (operator+).

The form lists every assessed deployment (GPU kind, GPUs per replica, replicas, SLOs, prefix
caching on or off, routing, host memory for KV offload in GiB, the GPU kinds the planner
may move it to: pinned or excluded), a price per GPU kind, the strategies and whether the
planner may move deployments to other kinds at all; the view turns the posted fields into the
`changes` object of `advisor.services.whatif` and calls one service. Bad input is answered
all at once (`whatif_problems`), each problem by its input's label ("llama: TTFT p95 (s):
...") and that input marked; nothing is stored. The run is simulated on the `sim` queue; its
page polls `progress.json` and shows the answer beside the assessment's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from advisor.models import Assessment, AssessmentStatus
from advisor.services.assessment_engine import scenario_from_json
from advisor.services.whatif import SLO_KEYS, WhatIfInputError, whatif_choices, whatif_problems
from dashboard.access import role_required
from dashboard.figures import assessments as figures
from dashboard.labels import label
from dashboard.models import WhatIf, WhatIfStatus
from dashboard.selectors.assessments import (
    assessment_view,
    combination_label,
    finite,
    plan_view,
)
from dashboard.whatif import whatif_create
from probes.roles import OPERATOR, VIEWER


@dataclass(frozen=True)
class FormField:
    """One input of the form: its name, its label in errors, where its value goes."""

    name: str  # the input's name ("d0-replicas")
    label: str  # as an error names it ("llama: replicas today")
    path: tuple[str, ...]  # its place in `changes` ("deployments", "llama", "replicas")
    kind: str  # "text" | "whole" | "number" | "switch" (on/off) | "kinds" (a multiple select)

    @property
    def field(self) -> str:
        """The service's name for it ("deployments.llama.replicas")."""
        return ".".join(self.path)


def form_fields(choices: dict[str, Any]) -> list[FormField]:
    """Every input of the form, in page order."""
    fields = []
    for index, item in enumerate(choices["deployments"]):
        name = item["name"]
        at = ("deployments", name)
        fields += [
            FormField(f"d{index}-hardware", f"{name}: GPU", (*at, "hardware"), "text"),
            FormField(
                f"d{index}-tensor_parallel", f"{name}: GPUs per replica",
                (*at, "tensor_parallel"), "whole",
            ),
            FormField(f"d{index}-replicas", f"{name}: replicas today", (*at, "replicas"), "whole"),
            FormField(
                f"d{index}-enable_prefix_caching", f"{name}: prefix caching",
                (*at, "enable_prefix_caching"), "switch",
            ),
            FormField(f"d{index}-routing", f"{name}: routing", (*at, "routing"), "text"),
            FormField(
                f"d{index}-kv_offload_gib", f"{name}: KV offload to host memory (GiB)",
                (*at, "kv_offload_gib"), "number",
            ),
            FormField(
                f"d{index}-pin", f"{name}: move only to", (*at, "gpu_kinds", "pin"), "kinds"
            ),
            FormField(
                f"d{index}-exclude", f"{name}: never move to", (*at, "gpu_kinds", "exclude"),
                "kinds",
            ),
        ]  # fmt: skip
        fields += [
            FormField(f"d{index}-{key}", f"{name}: {label(key)}", (*at, "slo", key), "number")
            for key in SLO_KEYS
        ]
    fields += [
        FormField(
            f"price-{gpu['name']}", f"price of {gpu['name']} (USD per GPU-hour)",
            ("prices", gpu["name"]), "number",
        )
        for gpu in choices["gpu_kinds"]
    ]  # fmt: skip
    fields.append(
        FormField("hardware_moves", "moves to other GPU kinds", ("hardware_moves",), "switch")
    )
    return fields


SWITCH = {"on": True, "off": False}


def kinds_marker(name: str) -> str:
    """The hidden input that says a deployment's kind lists were posted ("d0-kinds"): a
    browser posts nothing for a multiple select left empty, which must still clear a list."""
    return name.rsplit("-", 1)[0] + "-kinds"


def _parsed(raw: str, kind: str) -> str | float | int:
    """The input's value; ValueError (the message) when it is not a number it should be."""
    if kind == "text":
        return raw
    if kind == "switch":
        if raw not in SWITCH:
            raise ValueError(f"expected on or off, got {raw!r}")
        return SWITCH[raw]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if kind == "whole":
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {raw!r}")
        return int(value)
    return value


def changes_from_post(post: Any, choices: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The posted form as `changes` (only what differs is a change; the service decides),
    and the inputs that are not numbers where numbers belong: {input name: message}."""
    changes: dict[str, Any] = {"deployments": {}, "prices": {}}
    invalid: dict[str, str] = {}
    for f in form_fields(choices):
        value: Any
        if f.kind == "kinds":
            if not post.get(kinds_marker(f.name)):
                continue
            value = [kind.strip() for kind in post.getlist(f.name) if kind.strip()]
        else:
            raw = (post.get(f.name) or "").strip()
            if not raw:
                continue
            try:
                value = _parsed(raw, f.kind)
            except ValueError as exc:
                invalid[f.name] = str(exc)
                continue
        target = changes
        for key in f.path[:-1]:
            target = target.setdefault(key, {})
        target[f.path[-1]] = value
    changes["strategies"] = [
        name for name in choices["strategies"] if post.get(f"s-{name}") == "on"
    ]
    return changes, invalid


# What the form says for a problem the service names by a field no input holds.
GENERAL = {"changes": "Change", "strategies": "Strategies", "assessment": "Assessment"}


def form_errors(
    problems: list[WhatIfInputError], invalid: dict[str, str], choices: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """Every problem as the form says it ("llama: TTFT p95 (s): expected ..."), in page
    order, and {input name: message} for the inputs to mark."""
    fields = form_fields(choices)
    by_field = {f.field: f for f in fields}
    marked = dict(invalid)
    general = []
    for problem in problems:
        known = [
            by_field[prefix]
            for prefix in by_field
            if problem.field == prefix or problem.field.startswith((prefix + ".", prefix + "["))
        ]
        if known:
            marked.setdefault(known[0].name, problem.message)
        else:
            head = problem.field.split(".")[0].split("[")[0]
            general.append(f"{GENERAL.get(head, 'Change')}: {problem.message}")
    shown = [f"{f.label}: {marked[f.name]}" for f in fields if f.name in marked]
    return shown + general, marked


def _form_rows(
    choices: dict[str, Any], post: Any | None, invalid: dict[str, str]
) -> dict[str, Any]:
    """The form's values (what was posted, else the assessment's own) and each input's
    problem (`invalid`: {input name: message})."""
    rows = []
    for index, item in enumerate(choices["deployments"]):
        values = {
            "hardware": item["hardware"],
            "tensor_parallel": item["tensor_parallel"],
            "replicas": item["replicas"],
            **item["slo"],
            "routing": item["routing"],
            "kv_offload_gib": item["kv_offload_gib"],
        }
        values["enable_prefix_caching"] = "on" if item["enable_prefix_caching"] else "off"
        kinds = {key: list(item["gpu_kinds"][key]) for key in ("pin", "exclude")}
        if post is not None:
            for key in values:
                values[key] = post.get(f"d{index}-{key}", "")
            if post.get(f"d{index}-kinds"):
                kinds = {key: post.getlist(f"d{index}-{key}") for key in ("pin", "exclude")}
        values.update(kinds)
        problems = {
            key: invalid[f"d{index}-{key}"] for key in values if f"d{index}-{key}" in invalid
        }
        rows.append({"index": index, "item": item, "values": values, "errors": problems})
    prices = []
    used = {d["hardware"] for d in choices["deployments"]} | set(choices["prices"])
    for gpu in choices["gpu_kinds"]:
        stored = choices["prices"].get(gpu["name"])
        value = stored["usd_per_gpu_hour"] if stored else gpu["usd_per_gpu_hour"]
        if post is not None:
            value = post.get(f"price-{gpu['name']}", "")
        prices.append({
            "gpu": gpu, "stored": stored, "value": value, "used": gpu["name"] in used,
            "error": invalid.get(f"price-{gpu['name']}", ""),
        })  # fmt: skip
    enabled = set(choices["enabled"])
    if post is not None:
        enabled = {name for name in choices["strategies"] if post.get(f"s-{name}") == "on"}
    strategies = [
        {"name": name, "label": combination_label([name]), "on": name in enabled}
        for name in choices["strategies"]
    ]
    moves = "on" if choices["hardware_moves"] else "off"
    if post is not None:
        moves = post.get("hardware_moves", "")
    hardware = {"value": moves, "error": invalid.get("hardware_moves", "")}
    return {"rows": rows, "prices": prices, "strategies": strategies, "hardware": hardware}


@role_required(VIEWER, post=OPERATOR)
def whatif_playground(request: HttpRequest, assessment_id: int) -> HttpResponse:
    """GET: the assessment's what-ifs and (operators) the form; POST: start a what-if."""
    assessment = get_object_or_404(Assessment.objects.select_related("cluster"), pk=assessment_id)
    usable = assessment.status == AssessmentStatus.COMPLETED and bool(assessment.scenario)
    choices = whatif_choices(assessment=assessment) if usable else None
    errors: list[str] = []
    invalid: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        if choices is None:
            errors.append(f"Assessment: #{assessment.pk} has no finished scenario to change")
        else:
            # Every problem at once: inputs that are no numbers, then the service's checks
            # of the others; only a form without any is stored.
            changes, unparsed = changes_from_post(request.POST, choices)
            problems = whatif_problems(
                scenario=scenario_from_json(assessment.scenario), changes=changes
            )
            if not unparsed and not problems:
                try:
                    whatif = whatif_create(
                        assessment=assessment, changes=changes, user=request.user
                    )
                except WhatIfInputError as exc:
                    problems = [exc]
                else:
                    messages.success(request, f"What-if #{whatif.pk} started.")
                    return redirect("dashboard:whatif", whatif_id=whatif.pk)
            errors, invalid = form_errors(problems, unparsed, choices)
        status = 400
    posted = request.POST if request.method == "POST" else None
    form = _form_rows(choices, posted, invalid) if choices else None
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
