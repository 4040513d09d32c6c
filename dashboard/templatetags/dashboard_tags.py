"""Number formatting, the navigation bar, figure embedding and the glossary for templates."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from django import template
from django.urls import reverse
from django.utils.html import format_html

from dashboard.access import has_role
from dashboard.figures.theme import figure_json
from dashboard.glossary import definition
from dashboard.nav import NAV
from dashboard.selectors.assessments import finite, measured_in_totals
from probes.roles import role_of

register = template.Library()
DASH = "\u2013"


def _missing(value: Any) -> bool:
    """None, or "" (what a template gives for a key that is not there)."""
    return value is None or value == ""


def _number(value: Any) -> Any:
    """Numbers as they are; the engine's "Infinity"/"NaN" strings as None (shown as a dash)."""
    return finite(value) if isinstance(value, str) else value


@register.filter
def usd(value: Any) -> str:
    """$1,234 (no cents above $100, cents below); "no price" for None."""
    if _missing(value):
        return "no price"
    return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"


@register.filter
def money(value: Any) -> str:
    """Like `usd`, but a missing or non-finite figure is a dash (not "no price")."""
    number = finite(value)
    return DASH if number is None else usd(number)


@register.filter
def signed_usd(value: Any) -> str:
    """+$1,234 / -$1,234 (a change); a dash when missing."""
    number = finite(value)
    if number is None:
        return DASH
    return ("+" if number > 0 else "-" if number < 0 else "") + usd(abs(number))


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    value = _number(value)
    return DASH if _missing(value) else f"{value:.{digits}f}%"


@register.filter
def ratio_pct(value: Any) -> str:
    """A 0..1 ratio as a percentage."""
    value = _number(value)
    return DASH if _missing(value) else f"{value * 100:.1f}%"


@register.filter
def hours(value: Any) -> str:
    if _missing(value):
        return DASH
    return f"{value:,.0f} h" if abs(value) >= 100 else f"{value:,.1f} h"


@register.filter
def num(value: Any, digits: int = 2) -> str:
    value = _number(value)
    if _missing(value):
        return DASH
    return f"{value:,.{digits}f}"


@register.filter
def seconds(value: Any) -> str:
    """Latency: ms below a second, s above."""
    value = _number(value)
    if _missing(value):
        return DASH
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """`{{ rows|get_item:name }}`: a dict's value by a variable key (None when absent)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def words(value: Any) -> str:
    """snake_case to words: "not_recommended" -> "not recommended"."""
    return str(value).replace("_", " ")


@register.filter
def gib(value: Any) -> str:
    return DASH if _missing(value) else f"{value / 2**30:,.1f} GiB"


@register.simple_tag
def plotly(fig: go.Figure, name: str, link: str = "") -> str:
    """A chart container and its figure JSON; static/js/charts.js draws it (no inline JS).

    `link` ("/gpus/ID/") makes a click on a row or bar open that object's page, taking the
    id from the figure's `layout.meta.ids`.
    """
    return format_html(
        '<div class="chart" data-figure="fig-{0}" data-link="{1}" role="img" aria-label="{2}">'
        '</div><script type="application/json" id="fig-{0}">{3}</script>',
        name,
        link,
        fig.layout.title.text or name,
        figure_json(fig),
    )


@register.inclusion_tag("dashboard/_nav.html", takes_context=True)
def nav(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    user = request.user
    entries = []
    for entry in NAV:
        if not has_role(user, entry.role):
            continue  # the Django admin lets the admin role in (dashboard.admin_site)
        path = request.path
        active = path == "/" if entry.prefix == "/" else path.startswith(entry.prefix)
        entries.append({"label": entry.label, "url": reverse(entry.url_name), "active": active})
    return {"entries": entries, "role": role_of(user) or "no role"}


@register.filter
def can(user: Any, role: str) -> bool:
    """`{% if user|can:"operator" %}`: show a control only to roles that may use it."""
    return has_role(user, role)


# A GpuSeries' or EngineSeries' statistics of one named series.
@register.filter
def series_mean(series: Any, name: str) -> float | None:
    return series.mean(name)


@register.filter
def series_p95(series: Any, name: str) -> float | None:
    return series.p95(name)


@register.filter
def series_peak(series: Any, name: str) -> float | None:
    return series.peak(name)


@register.filter
def series_total(series: Any, name: str) -> float:
    return series.total(name)


@register.simple_tag
def define(key: str) -> str:
    """`{% define "burstiness" %}`: the word's one definition (`dashboard.glossary`)."""
    return definition(key)


@register.filter
def measured_usd_in_totals(assessment: Any) -> float | None:
    """Measured today ($/month) of the deployments the assessment's simulated totals cover."""
    return measured_in_totals(assessment).get("usd_per_month")
