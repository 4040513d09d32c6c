"""What a report says: a list of sections, each with its numbers and its figures.

`SECTIONS` is the extension point: a builder takes the cluster (None: all) and the window
and returns a `Section`, or None when it has nothing to say. The fleet section is built
from the same selector and figure builders as the fleet page, and the assessment section
from the assessment page's (`dashboard.selectors.assessments`, `dashboard.figures.assessments`),
so report and pages agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go
from django.conf import settings
from django.utils import timezone

from advisor.models import Assessment, AssessmentStatus
from dashboard.demo_notice import demo_notice
from dashboard.figures import assessments as assessment_figures
from dashboard.figures import fleet as fleet_figures
from dashboard.selectors.assessments import (
    assessment_view,
    calibration_range,
    calibration_views,
    combination_label,
    energy_of,
    finite,
    measured_assessed,
)
from dashboard.selectors.fleet import fleet_overview
from dashboard.windows import Window
from probes.models import Cluster

REPORT_WIDTH_PX = 900


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    template: str  # HTML, included by reports/report.html
    text_template: str  # plain text, included by reports/report.txt
    context: dict[str, Any]
    figures: dict[str, go.Figure] = field(default_factory=dict)
    # JSON-safe headline numbers kept in the archive (Report.summary[key]).
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportContent:
    title: str
    cluster: Cluster | None
    window: Window
    generated_at: datetime
    site_url: str
    sections: tuple[Section, ...]

    @property
    def figures(self) -> dict[str, go.Figure]:
        """Every section's figures, named `<section>_<figure>` (image names, cid: ids)."""
        return {
            f"{section.key}_{name}": fig
            for section in self.sections
            for name, fig in section.figures.items()
        }

    @property
    def summary(self) -> dict[str, Any]:
        return {section.key: section.summary for section in self.sections if section.summary}

    @property
    def pricing_note(self) -> str:
        """How GPUs were priced: the fleet figures never price a kind without a price sheet
        row; an assessment prices it at the catalog's list price, named here."""
        listed: dict[str, set[str]] = {}
        for section in self.sections:
            for entry in section.context.get("entries") or ():
                assessment = entry["assessment"]
                prices = (assessment.inputs or {}).get("prices") or {}
                for kind, price in prices.items():
                    if not price.get("from_price_sheet"):
                        label = f"{kind} at ${price.get('usd_per_gpu_hour', 0):.2f}/GPU-hour"
                        listed.setdefault(label, set()).add(f"#{assessment.pk}")
        text = (
            "Every figure is computed from this fleet's telemetry and the price sheet. The fleet "
            "figures list GPUs without a price sheet row apart and do not price them"
        )
        if not listed:
            return text + "; no assessment here priced a GPU kind from a list price."
        kinds = "; ".join(
            f"{label} (assessment {', '.join(sorted(ids))})"
            for label, ids in sorted(listed.items())
        )
        return (
            text + "; the assessments price them at the engine catalog's list price: " + kinds + "."
        )


def fleet_section(cluster: Cluster | None, window: Window) -> Section:
    overview = fleet_overview(window=window, cluster=cluster)
    heatmap = fleet_figures.utilization_heatmap(overview)
    # A report is read on paper: cap the heatmap to a page.
    if heatmap.layout.height and heatmap.layout.height > 1000:
        heatmap.update_layout(height=1000)
    return Section(
        key="fleet",
        title="Fleet utilization and idle cost",
        template="reports/_fleet.html",
        text_template="reports/_fleet.txt",
        context={"overview": overview},
        figures={
            "heatmap": heatmap,
            "idle": fleet_figures.idle_cost_bars(overview),
            "util": fleet_figures.utilization_histogram(overview),
        },
        summary={
            "gpus": overview.gpu_count,
            "util_mean_pct": overview.util_mean_pct,
            "util_p95_pct": overview.util_p95_pct,
            "idle_gpu_hours": overview.idle_gpu_hours,
            "idle_cost_usd": overview.idle_cost_usd,
            "unused_cost_usd": overview.unused_cost_usd,
            "cost_usd": overview.cost_usd,
            "unpriced": [u.label for u in overview.unpriced],
        },
    )


# An assessment finished up to this long after the report's window ends still belongs to it
# (weekly assessments end on the hour; the weekly report runs an hour later).
ASSESSMENT_SLACK = timedelta(hours=2)


def assessment_section(cluster: Cluster | None, window: Window) -> Section | None:
    """Each cluster's latest finished assessment ending by the window's end (None: none)."""
    clusters = [cluster] if cluster is not None else list(Cluster.objects.all())
    entries = []
    figures: dict[str, go.Figure] = {}
    summary: dict[str, Any] = {}
    for i, each in enumerate(clusters):
        assessment = (
            Assessment.objects.filter(
                cluster=each,
                status=AssessmentStatus.COMPLETED,
                window_end__lte=window.end + ASSESSMENT_SLACK,
            )
            .defer("scenario")
            .order_by("-window_end", "-id")
            .first()
        )
        if assessment is None:
            continue
        view = assessment_view(assessment)
        names = {"waterfall": f"waterfall_{i}", "strategies": f"strategies_{i}"}
        entries.append(
            {
                "cluster": each,
                "assessment": assessment,
                "view": view,
                "measured": measured_assessed(assessment, view),
                "calibrations": calibration_views(assessment),
                "calibration_range": calibration_range(view),
                "combinations": [
                    {**row, "label": combination_label(row.get("strategies") or ())}
                    for row in view.combinations
                ],
                "images": {key: f"assessment_{name}" for key, name in names.items()},
                "demo_notice": demo_notice(each.name),
            }
        )
        if view.assessed:
            figures[names["waterfall"]] = assessment_figures.waterfall(view)
            figures[names["strategies"]] = assessment_figures.strategy_savings(view)
        summary[each.name] = {
            "assessment_id": assessment.pk,
            "window_end": assessment.window_end.isoformat(),
            "baseline_usd_per_month": finite(view.fleet_baseline.get("usd_per_month")),
            "plan_usd_per_month": finite(view.fleet_plan.get("usd_per_month")),
            "savings_usd_per_month": view.savings_usd_per_month,
            "savings_fraction": view.savings_fraction,
            "baseline_kwh_per_month": energy_of(view.fleet_baseline)[0],
            "plan_kwh_per_month": energy_of(view.fleet_plan)[0],
            "not_assessed": [gap.get("deployment") for gap in assessment.data_gaps or []],
        }
    if not entries:
        return None
    return Section(
        key="assessment",
        title="Assessment: what the strategies would save",
        template="reports/_assessment.html",
        text_template="reports/_assessment.txt",
        context={"entries": entries},
        figures=figures,
        summary=summary,
    )


SectionBuilder = Callable[[Cluster | None, Window], Section | None]
SECTIONS: list[SectionBuilder] = [fleet_section, assessment_section]


def report_content(*, cluster: Cluster | None, window: Window) -> ReportContent:
    sections = tuple(s for s in (build(cluster, window) for build in SECTIONS) if s is not None)
    where = cluster.name if cluster else "all clusters"
    return ReportContent(
        title=f"GPU cost report: {where}, {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d}",
        cluster=cluster,
        window=window,
        generated_at=timezone.now(),
        site_url=settings.SITE_URL.rstrip("/"),
        sections=sections,
    )
