"""Assessment figures: the savings waterfall, per-strategy savings, today vs plan, sensitivity,
and the weekly trend. Built from `dashboard.selectors.assessments` (the engine's numbers)."""

from __future__ import annotations

import plotly.graph_objects as go

from dashboard.figures.theme import ACCENT, BAD, MUTED, OK, SERIES, WARN, empty, themed
from dashboard.formatting import signed_usd, usd
from dashboard.selectors.assessments import (
    PlanView,
    TrendPoint,
    finite,
    strategy_label,
)


def _wrap(label: str, width: int = 12) -> str:
    """Break a category label into lines of about `width` characters (Plotly's <br>)."""
    lines: list[str] = []
    for word in label.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def waterfall(view: PlanView, *, title: str = "From today's cost to the plan") -> go.Figure:
    """Today (simulated) -> right-sizing -> each strategy in the planner's order -> plan."""
    steps = view.waterfall
    if not steps:
        return empty("No plan: nothing was assessed", title=title)
    fig = go.Figure(
        go.Waterfall(
            x=[_wrap(s.label) for s in steps],
            y=[s.usd_per_month for s in steps],
            measure=[s.measure for s in steps],
            text=[
                usd(s.usd_per_month) if s.measure != "relative" else signed_usd(s.usd_per_month)
                for s in steps
            ],
            textposition="outside",
            connector={"line": {"color": MUTED, "width": 1}},
            decreasing={"marker": {"color": OK}},
            increasing={"marker": {"color": BAD}},
            totals={"marker": {"color": ACCENT}},
            customdata=[s.note for s in steps],
            hovertemplate="%{x}: %{text} USD/month %{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(title_text="USD per month", rangemode="tozero")
    fig.update_xaxes(tickangle=0, tickfont={"size": 11}, automargin=True)
    fig.update_layout(showlegend=False)
    return themed(fig, title=title, height=360)


def strategy_savings(view: PlanView) -> go.Figure:
    """Each strategy alone on the whole fleet, from the engine's combination table.

    A strategy's result against today includes right-sizing today's configuration (fewer
    replicas of it), which every strategy gets; the bar shows that shared part apart from
    what the strategy adds beyond it, so right-sizing is not credited to each strategy.
    """
    title = "Each strategy alone, whole fleet (USD/month saved vs today)"
    baseline = finite(view.fleet_baseline.get("usd_per_month"))
    rows = {frozenset(r.get("strategies") or ()): r for r in view.combinations}
    resized = finite((rows.get(frozenset()) or {}).get("usd_per_month"))
    if baseline is None or resized is None or not view.strategies:
        return empty("No strategy results", title=title)
    names = list(view.strategies)
    alone = [finite((rows.get(frozenset({n})) or {}).get("usd_per_month")) for n in names]
    labels = [strategy_label(n) for n in names]
    beyond = [None if cost is None else resized - cost for cost in alone]
    fig = go.Figure(
        [
            go.Bar(
                y=labels, x=[baseline - resized] * len(names), orientation="h", marker_color=MUTED,
                name="right-sizing today's configuration (every strategy gets it)",
                hovertemplate="right-sizing: %{x:$,.0f}/month<extra></extra>",
            ),
            go.Bar(
                y=labels, x=beyond, orientation="h", marker_color=OK,
                name="what the strategy adds",
                text=[None if b is None else signed_usd(b) for b in beyond],
                textposition="outside",
                hovertemplate="%{y}: %{x:$,.0f}/month beyond right-sizing<extra></extra>",
            ),
        ]
    )  # fmt: skip
    widest = max((baseline - resized) + max(b or 0.0, 0.0) for b in beyond)
    fig.update_layout(barmode="relative", legend={"y": -0.45})
    # room on the right for the value labels drawn outside the bars
    lowest = min(0.0, *(b or 0.0 for b in beyond))
    fig.update_xaxes(
        title_text="USD/month saved vs today (simulated)", range=[lowest, widest * 1.18 or 1.0]
    )
    fig.update_yaxes(automargin=True, autorange="reversed")
    return themed(fig, title=title, height=max(300, 160 + 34 * len(names)))


def today_vs_plan(view: PlanView) -> go.Figure:
    """Per deployment: measured today, simulated today, plan (USD per month)."""
    title = "Cost per deployment: measured, simulated today, plan"
    rows = view.assessed
    if not rows:
        return empty("No deployment was assessed", title=title)
    names = [d.name for d in rows]
    measured = [finite((d.measured or {}).get("usd_per_month")) for d in rows]
    simulated = [finite((d.baseline or {}).get("usd_per_month")) for d in rows]
    planned = [
        finite((d.plan or {}).get("usd_per_month")) if d.status == "ok" else None for d in rows
    ]
    fig = go.Figure()
    for label, values, color in (
        ("measured today", measured, MUTED),
        ("simulated today", simulated, WARN),
        ("plan", planned, OK),
    ):
        fig.add_trace(
            go.Bar(
                x=names, y=values, name=label, marker_color=color,
                hovertemplate="%{x}: %{y:$,.0f}/month<extra>" + label + "</extra>",
            )
        )  # fmt: skip
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="USD per month", rangemode="tozero")
    return themed(fig, title=title, height=300)


def sensitivity(view: PlanView) -> go.Figure:
    """Tornado: the plan's monthly cost when one input moves to its low or high value."""
    title = "Sensitivity of the plan's cost"
    plan_usd = finite(view.fleet_plan.get("usd_per_month"))
    rows = [
        r
        for r in view.sensitivity
        if finite(r.get("plan_usd_per_month_low")) is not None
        or finite(r.get("plan_usd_per_month_high")) is not None
    ]
    if not rows or plan_usd is None:
        return empty("No sensitivity analysis (nothing to plan)", title=title)
    rows = rows[::-1]  # largest swing on top
    labels = [str(r.get("input")) for r in rows]
    fig = go.Figure()
    for end, color in (("low", SERIES[0]), ("high", SERIES[1])):
        values = [finite(r.get(f"plan_usd_per_month_{end}")) for r in rows]
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[None if v is None else v - plan_usd for v in values],
                base=plan_usd,
                orientation="h",
                name=f"input at its {end} value",
                marker_color=color,
                customdata=[r.get(f"{end}_label") for r in rows],
                hovertemplate="%{y} %{customdata}: %{x:+$,.0f}/month<extra></extra>",
            )
        )
    fig.add_vline(x=plan_usd, line_color=MUTED, line_dash="dash")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="plan cost, USD per month")
    fig.update_yaxes(automargin=True)
    return themed(fig, title=title, height=max(240, 70 + 30 * len(rows)))


def trend(points: tuple[TrendPoint, ...]) -> go.Figure:
    """The weekly assessments of a cluster: measured cost, the plan's cost, utilization."""
    title = "Trend across assessments"
    if len(points) < 2:
        return empty("One assessment so far: the trend starts with the next", title=title)
    x = [p.window_end for p in points]
    fig = go.Figure(
        [
            go.Scatter(
                x=x, y=[p.measured_usd_per_month for p in points], name="measured USD/month",
                mode="lines+markers", line={"color": MUTED},
            ),
            go.Scatter(
                x=x, y=[p.plan_usd_per_month for p in points], name="plan USD/month",
                mode="lines+markers", line={"color": OK},
            ),
            go.Scatter(
                x=x, y=[p.measured_util_pct for p in points], name="measured utilization %",
                mode="lines+markers", line={"color": ACCENT, "dash": "dot"}, yaxis="y2",
            ),
        ]
    )  # fmt: skip
    fig.update_layout(
        yaxis={"title": {"text": "USD per month"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "utilization %"}, "overlaying": "y", "side": "right",
                "range": [0, 100], "showgrid": False},
        meta={"ids": [p.assessment_id for p in points]},
    )  # fmt: skip
    fig = themed(fig, title=title, height=280)
    fig.update_layout(margin={"r": 64})  # room for the right axis' title
    return fig


def compare_plans(before: PlanView, after: PlanView, *, labels: tuple[str, str]) -> go.Figure:
    """Two answers side by side (an assessment and its what-if): today and plan, USD/month."""
    title = "Today and plan: assessment vs what-if"
    values = []
    for view in (before, after):
        values.append(
            (
                finite(view.fleet_baseline.get("usd_per_month")),
                finite(view.fleet_plan.get("usd_per_month")),
            )
        )
    if all(v[0] is None for v in values):
        return empty("Nothing to compare", title=title)
    fig = go.Figure(
        [
            go.Bar(x=list(labels), y=[v[0] for v in values], name="today (simulated)",
                   marker_color=WARN),
            go.Bar(x=list(labels), y=[v[1] for v in values], name="plan", marker_color=OK),
        ]
    )  # fmt: skip
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="USD per month", rangemode="tozero")
    return themed(fig, title=title, height=280)
