"""Number formatting, the navigation bar, figure embedding and the glossary for templates."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from django import template
from django.urls import reverse
from django.utils.html import format_html

from dashboard import labels
from dashboard.access import has_role
from dashboard.figures.theme import figure_json
from dashboard.formatting import signed_usd as change
from dashboard.formatting import usd as dollars
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
def money(value: Any) -> str:
    """$1,234 / -$4,060 (`dashboard.formatting.usd`); a dash when missing or not finite.

    The one way a page writes money; `usd` and `signed_usd` differ only in what they say
    for a missing figure and in the plus sign.
    """
    number = finite(value)
    return DASH if number is None else dollars(number)


@register.filter
def usd(value: Any) -> str:
    """Like `money`, but a missing figure is "no price" (a GPU without a price sheet row)."""
    return "no price" if _missing(value) else money(value)


@register.filter
def signed_usd(value: Any) -> str:
    """+$1,234 / -$1,234 (a change); a dash when missing."""
    number = finite(value)
    return DASH if number is None else change(number)


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
def label(name: Any) -> str:
    """A field name as a form or a column says it, with its unit: "TTFT p95 (s)"."""
    return labels.label(str(name))


@register.filter
def term(name: Any) -> str:
    """A field name as a sentence says it: "TTFT p95"."""
    return labels.term(str(name))


@register.filter
def plain(value: Any) -> str:
    """A stored value for reading: yes / no, not True / False."""
    return labels.plain(value)


@register.filter
def flag_text(flag: Any) -> str:
    """A ledger flag in words: "Under half the projection: realized 6.2% ..."."""
    return labels.flag_text(str(flag))


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
