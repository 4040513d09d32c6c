"""What a report says: a list of sections, each with its numbers and its figures.

`SECTIONS` is the extension point: a builder takes the cluster (None: all) and the window
and returns a `Section`, or None when it has nothing to say. The fleet section is built
from the same selector and figure builders as the fleet page, so report and page agree.
The assessment section (issue 6) is appended here once assessments exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from django.conf import settings
from django.utils import timezone

from dashboard.figures import fleet as fleet_figures
from dashboard.selectors.fleet import IDLE_UTIL_PCT, fleet_overview
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
        context={"overview": overview, "idle_util_pct": IDLE_UTIL_PCT},
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


SectionBuilder = Callable[[Cluster | None, Window], Section | None]
SECTIONS: list[SectionBuilder] = [fleet_section]


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
