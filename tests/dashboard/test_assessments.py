"""Assessment pages: the engine's numbers on the page, the waterfall, starting one, progress."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from advisor.models import Assessment, AssessmentStatus
from dashboard.formatting import usd
from dashboard.glossary import definition
from dashboard.selectors.assessments import (
    PLANNER_ORDER,
    args_diff,
    assessment_view,
    energy_of,
    gpu_accounting,
    strategy_cells,
    waterfall_steps,
)
from tests.dashboard.assessed import assessment_completed, assessment_with_weak_evidence
from tests.dashboard.conftest import END, SmallFleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def assessment(small_fleet: SmallFleet) -> Assessment:
    return assessment_completed(cluster=small_fleet.cluster, end=END)


def _figure(html: str, name: str) -> dict[str, Any]:
    marker = f'<script type="application/json" id="fig-{name}">'
    assert marker in html, f"no figure {name}"
    return json.loads(html.split(marker)[1].split("</script>")[0])


def test_it_shows_the_engines_plan_beside_what_was_measured(
    client: Client, carol, assessment: Assessment
) -> None:
    client.force_login(carol)
    response = client.get(f"/assessments/{assessment.pk}/")
    html = response.content.decode()

    assert response.status_code == 200
    plan = assessment.plan
    kpi = html.split('data-testid="kpi-plan"')[1].split("</div>")[0]
    assert f"${plan['fleet_plan']['usd_per_month']:,.0f}" in kpi
    # measured today: the assessed deployments' GPUs (what the simulated baseline covers)
    measured = html.split('data-testid="kpi-measured"')[1].split("</div>")[0]
    by_deployment = assessment.measured["deployments"]
    assessed_usd = by_deployment["llama"]["usd_per_month"] + by_deployment["qwen"]["usd_per_month"]
    assert f"${assessed_usd:,.0f}" in measured
    assert f"whole cluster ${assessment.measured['fleet']['usd_per_month']:,.0f}" in measured
    simulated = html.split('data-testid="kpi-simulated"')[1].split("</div>")[0]
    assert f"${plan['fleet_baseline']['usd_per_month']:,.0f}" in simulated
    # the product brief's table: one row per strategy combination the engine computed
    table = html.split('data-testid="combinations"')[1].split("</table>")[0]
    assert table.count("<tr") - 1 == len(plan["combinations"]) == 2**5
    assert "continuous batching + quantization" in table
    # the baseline-vs-plan table has each assessed deployment with its measured utilization
    rows = html.split('data-testid="baseline-vs-plan"')[1].split("</table>")[0]
    assert rows.count('data-testid="deployment-row"') == 2
    assert "55.0%" in rows  # llama's measured utilization
    # not enough data is an answer, shown with what is missing
    assert "deployment llama-batch has 2 h of telemetry" in html
    assert 'data-testid="assumptions"' in html
    assert "test contract" in html
    # the waterfall is the engine's: it starts at today's simulated cost and ends at the plan
    waterfall = _figure(html, "waterfall")["data"][0]
    assert waterfall["type"] == "waterfall"
    assert waterfall["y"][0] == pytest.approx(plan["fleet_baseline"]["usd_per_month"])
    assert waterfall["y"][-1] == pytest.approx(plan["fleet_plan"]["usd_per_month"])
    # each strategy alone (fleet): right-sizing apart from what the strategy adds
    cost = {frozenset(r["strategies"]): r["usd_per_month"] for r in plan["combinations"]}
    bars = _figure(html, "strategies")["data"]
    assert bars[0]["x"][0] == pytest.approx(
        plan["fleet_baseline"]["usd_per_month"] - cost[frozenset()]
    )
    assert bars[1]["x"][0] == pytest.approx(cost[frozenset()] - cost[frozenset({"quantization"})])
    # viewers get no controls
    assert 'data-testid="whatif-link"' not in html
    assert 'data-testid="propose-plan"' not in html


def test_an_operator_gets_the_what_if_and_rollout_links(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    assert f'href="/assessments/{assessment.pk}/whatif/"' in html
    assert f"/rollouts/new/?assessment={assessment.pk}" in html


def test_the_waterfall_follows_the_planners_order_and_adds_up(assessment: Assessment) -> None:
    view = assessment_view(assessment)
    steps = view.waterfall
    rows = {frozenset(r["strategies"]): r["usd_per_month"] for r in view.combinations}

    assert [s.label for s in steps] == [
        "today (simulated)", "right-sizing",
        *(f"+ {label}" for label in ("quantization", "continuous batching",
                                     "speculative decoding", "elastic scaling",
                                     "multi-model GPU sharing")),
        "plan",
    ]  # fmt: skip
    total = steps[0].usd_per_month + sum(s.usd_per_month for s in steps[1:-1])
    assert total == pytest.approx(steps[-1].usd_per_month)
    assert steps[-1].usd_per_month == pytest.approx(view.fleet_plan["usd_per_month"])
    # each step is a difference of two rows of the combination table
    assert steps[1].usd_per_month == pytest.approx(rows[frozenset()] - steps[0].usd_per_month)
    assert steps[2].usd_per_month == pytest.approx(
        rows[frozenset({"quantization"})] - rows[frozenset()]
    )
    assert steps[3].usd_per_month == pytest.approx(
        rows[frozenset({"quantization", "batching"})] - rows[frozenset({"quantization"})]
    )


def test_the_waterfall_says_when_the_plan_is_not_the_last_combination() -> None:
    rows = [
        {"strategies": [], "usd_per_month": 90.0, "meets_slo": True},
        {"strategies": ["batching"], "usd_per_month": 60.0, "meets_slo": False},
    ]
    steps = waterfall_steps(rows, baseline_usd=100.0, plan_usd=55.0)
    assert [(s.label, s.usd_per_month, s.measure) for s in steps] == [
        ("today (simulated)", 100.0, "absolute"),
        ("right-sizing", -10.0, "relative"),
        ("+ continuous batching", -30.0, "relative"),
        ("other (planner)", -5.0, "relative"),
        ("plan", 55.0, "total"),
    ]
    assert steps[2].note == "misses an SLO"
    assert PLANNER_ORDER[0] == "quantization"


def test_the_args_diff_lines_up_todays_args_with_the_plans_flags() -> None:
    lines = args_diff(
        {"max_num_seqs": 64, "tensor-parallel-size": 2, "enable_chunked_prefill": True},
        {"engine_args": {"--max-num-seqs": 256, "--quantization": "fp8"}, "tensor_parallel": 1},
    )
    assert [(line.flag, line.before, line.after, line.kind) for line in lines] == [
        ("--enable-chunked-prefill", "(on)", "(on)", "same"),
        ("--max-num-seqs", "64", "256", "changed"),
        ("--quantization", None, "fp8", "added"),
        ("--tensor-parallel-size", "2", "1", "changed"),
    ]


def test_the_page_shows_the_args_diff_of_each_changed_deployment(
    client: Client, carol, assessment: Assessment
) -> None:
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    llama = next(p for p in assessment.plan["deployments"] if p["deployment"] == "llama")
    diffs = html.split('data-testid="args-diff"')
    assert len(diffs) - 1 == sum(p["status"] == "ok" for p in assessment.plan["deployments"])
    for flag, value in llama["config_change"]["engine_args"].items():
        assert f"+ {flag} {value}" in html


def test_the_list_shows_each_clusters_trend(client: Client, carol, small_fleet: SmallFleet) -> None:
    first = assessment_completed(cluster=small_fleet.cluster, end=END - timedelta(days=7))
    second = assessment_completed(cluster=small_fleet.cluster, end=END, previous=first)
    client.force_login(carol)
    html = client.get("/assessments/").content.decode()

    trend = _figure(html, "trend-prod")
    assert trend["layout"]["meta"]["ids"] == [first.pk, second.pk]
    # Issue 16, item 7: "measured today" was the whole cluster's beside a "simulated today"
    # of the assessed deployments; both now cover the deployments in the totals.
    by_deployment = first.measured["deployments"]
    in_totals = by_deployment["llama"]["usd_per_month"] + by_deployment["qwen"]["usd_per_month"]
    assert in_totals == 14_600.0  # 5 of the cluster's 6 GPUs at $4 x 730 h
    assert first.measured["fleet"]["usd_per_month"] == 17_520.0
    assert trend["data"][0]["y"] == [pytest.approx(in_totals)] * 2
    cells = html.split('data-testid="measured-today">')[1:]
    assert [cell.split("</td>")[0] for cell in cells] == ["$14,600", "$14,600"]
    definitions = html.split('data-testid="definitions">')[1].split("</p>")[0]
    assert escape(definition("measured_today")) in definitions
    assert html.count("/assessments/") >= 2
    assert 'data-testid="start-assessment"' not in html  # viewer


def test_an_operator_starts_an_assessment_and_a_viewer_may_not(
    client: Client, bob, carol, small_fleet: SmallFleet, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(carol)
    assert client.post("/assessments/", {"cluster": "prod", "window": "7d"}).status_code == 403
    assert not Assessment.objects.exists()

    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/assessments/", {"cluster": "prod", "window": "7d"})
    created = Assessment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/assessments/{created.pk}/"
    # tasks run in-process in tests: the small fleet has no traffic, which is an answer
    assert created.status == AssessmentStatus.COMPLETED, created.error
    assert created.created_by == bob
    page = client.get(response["Location"]).content.decode()
    gaps = page.split('data-testid="data-gaps"')[1].split("</section>")[0]
    assert [gap["deployment"] for gap in created.data_gaps] == ["llama"]
    assert escape(created.data_gaps[0]["message"]) in gaps


def test_a_bad_start_names_the_field_and_stores_nothing(
    client: Client, bob, small_fleet: SmallFleet
) -> None:
    client.force_login(bob)
    response = client.post("/assessments/", {"cluster": "nope", "window": "3y"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "cluster: Select a valid choice" in html
    assert "window: Select a valid choice" in html
    assert not Assessment.objects.exists()


def test_a_second_identical_start_shows_the_one_under_way(
    client: Client, bob, alice, small_fleet: SmallFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("advisor.services.assessments._queue_run", lambda assessment_id: None)
    client.force_login(bob)
    first = client.post("/assessments/", {"cluster": "prod", "window": "7d"})
    other = Client()
    other.force_login(alice)
    again = other.post("/assessments/", {"cluster": "prod", "window": "7d"}, follow=True)
    queued = Assessment.objects.get()
    assert first["Location"] == f"/assessments/{queued.pk}/"
    assert again.redirect_chain == [(f"/assessments/{queued.pk}/", 302)]
    assert [str(m) for m in again.context["messages"]] == [
        f"Assessment #{queued.pk} of this cluster and window is already queued: "
        "showing it instead of starting another."
    ]


def test_a_start_past_the_per_minute_limit_is_refused_on_the_form(
    client: Client, bob, small_fleet: SmallFleet, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr("advisor.services.assessments._queue_run", lambda assessment_id: None)
    settings.ASSESSMENTS_PER_USER_PER_MINUTE = 1
    client.force_login(bob)
    assert client.post("/assessments/", {"cluster": "prod", "window": "7d"}).status_code == 302
    refused = client.post("/assessments/", {"cluster": "prod", "window": "24h"})
    assert refused.status_code == 429
    assert refused.context["form"].non_field_errors() == [
        "too many started: at most 1 per minute per user; try again in 60 s"
    ]
    assert Assessment.objects.count() == 1


def test_progress_is_json_for_the_page_to_poll(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    running = Assessment.objects.create(
        cluster=small_fleet.cluster, window_start=END - timedelta(days=7), window_end=END,
        status=AssessmentStatus.RUNNING, progress=0.42, progress_message="deriving llama",
    )  # fmt: skip
    client.force_login(carol)
    assert client.get(f"/assessments/{running.pk}/progress.json").json() == {
        "status": "running", "progress": 0.42, "message": "deriving llama", "error": "",
        "done": False,
    }  # fmt: skip
    page = client.get(f"/assessments/{running.pk}/").content.decode()
    assert f'data-progress-url="/assessments/{running.pk}/progress.json"' in page
    assert (
        '<script src="/static/js/poll.js" defer></script>'
        '<script src="/static/js/progress.js" defer></script>'
    ) in page  # the shared polling loop first: progress.js calls it
    assert client.get("/assessments/999999/progress.json").status_code == 404


def test_confidence_falls_with_the_evidence_and_a_deployment_below_the_floor_is_not_priced(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    # Issue 16, item 3: 99% of minutes assumed and a -100 point gap stayed "medium", priced.
    assessment = assessment_with_weak_evidence(cluster=small_fleet.cluster, end=END)
    engine = assessment_completed(cluster=small_fleet.cluster, end=END).plan
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()

    table = html.split('data-testid="baseline-vs-plan"')[1].split("</table>")[0]
    assert table.count('data-testid="deployment-row"') == 3
    reasons = {
        row.split("<strong>")[1].split("</strong>")[0]: row.split("</strong> · ")[1]
        for row in table.split('data-testid="confidence-row">')[1:]
    }
    # each row starts with its confidence and why, the reason that capped it first
    assert reasons["qwen"].startswith(
        'confidence <span class="level-low">low</span>: '
        + escape("60% of the window's minutes assumed (864 of 1,440 without request counts "
                 "or GPU utilization); ")
    )  # fmt: skip
    assert reasons["llama"].startswith('confidence <span class="level-medium">medium</span>: ')
    assert escape("no minute of the window assumed") in reasons["llama"]
    assert reasons["chat"].startswith(
        'confidence <span class="level-not-enough-data">not enough data</span>: '
        + escape("not enough data: 60 of 1,440 minutes (4.2%) of the window "
                 "have a measured request rate, below the floor of 10%")
    )  # fmt: skip
    chat_row = table.split("<td>chat</td>")[1].split("</tr>")[0]
    assert "not priced" in chat_row
    assert "$5,840" in chat_row  # 2 GPUs x $4 x 730 h: today's cost, on both sides
    # the totals keep chat at today's cost: the engine's figures plus $5,840 on both sides
    held_usd = 2 * 4.0 * 730.0
    for key in ("fleet_baseline", "fleet_plan"):
        total = engine[key]["usd_per_month"] + held_usd
        assert assessment.plan[key]["usd_per_month"] == pytest.approx(total)
    simulated = html.split('data-testid="kpi-simulated"')[1].split("</div>")[0]
    assert f"${engine['fleet_baseline']['usd_per_month'] + held_usd:,.0f}" in simulated
    assert "and 1 not priced at today's cost" in simulated
    savings = html.split('data-testid="kpi-savings"')[1].split("</div>")[0]
    assert f"${engine['savings_usd_per_month']:,.0f}" in savings
    fraction = engine["savings_usd_per_month"] / (
        engine["fleet_baseline"]["usd_per_month"] + held_usd
    )
    assert f"{fraction * 100:.1f}% of the simulated cost" in savings
    # measured today: the deployments in the totals, chat (2 GPUs at 0%) included
    measured = html.split('data-testid="kpi-measured"')[1].split("</div>")[0]
    by_deployment = assessment.measured["deployments"]
    in_totals = sum(by_deployment[n]["usd_per_month"] for n in ("llama", "qwen", "chat"))
    assert f"${in_totals:,.0f}</span>" in measured
    assert "deployments in the totals · 7.0 GPUs" in measured
    confidence = html.split('data-testid="kpi-confidence"')[1].split("</div>")[0]
    assert confidence.index("chat:") < confidence.index("qwen:") < confidence.index("llama:")
    notice = html.split('data-testid="not-priced"')[1].split("</p>")[0]
    assert "<strong>chat</strong> stays at today's cost (2 GPUs, $5,840/month)" in notice
    floor = html.split('data-testid="data-floor"')[1].split("</p>")[0]
    assert "at least 10% of the window&#x27;s minutes to be priced" in floor


def test_the_page_shows_the_plans_constraints_with_the_redundancy_rule(
    client: Client, carol, assessment: Assessment
) -> None:
    """Issue 16 item 5: a 3-replica deployment is not cut to 1 without a word."""
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    table = html.split('data-testid="plan-constraints"')[1].split("</table>")[0]
    rows = {
        row.split("<td>")[1].split("</td>")[0]: row
        for row in table.split('data-testid="constraint-row"')[1:]
    }
    assert set(rows) == {"llama", "qwen"}
    plan = {d["deployment"]: d for d in assessment.plan["deployments"]}
    llama = plan["llama"]
    assert llama["constraints"]["min_replicas"] == 2  # today 3: the default keeps 2
    assert llama["constraints"]["replicas_for_load"] == 1  # the load alone needs 1
    assert llama["config"]["replicas"] == 2
    row = rows["llama"]
    assert (
        '<td class="num">2.00 s</td><td class="num">100 ms</td><td class="num">1.0 pts</td>' in row
    )
    assert '<td class="num">2</td>' in row
    assert (
        "at least 2 replicas (default: today runs 3, so one can fail or restart while another "
        "serves)" in row
    )
    assert '2 <span class="notice">kept by the rule: the load alone needs 1</span>' in row
    assert "today runs 2, so one can fail" in rows["qwen"]


def test_the_report_shows_the_plans_constraints(small_fleet: SmallFleet) -> None:
    from django.template.loader import render_to_string

    from dashboard.reports.content import report_content
    from dashboard.windows import Window

    assessment_completed(cluster=small_fleet.cluster, end=END)
    window = Window("7d", END - timedelta(days=7), END, end_given=True)
    content = report_content(cluster=small_fleet.cluster, window=window)
    section = next(s for s in content.sections if s.key == "assessment")
    html = render_to_string(section.template, {"section": section, "src": {}})
    table = html.split("<h3>Plan constraints</h3>")[1].split("</table>")[0]
    assert (
        "<td>at least 2 replicas (default: today runs 3, so one can fail or restart while "
        "another serves)</td><td>2 (kept by the rule: the load alone needs 1)</td>" in table
    )


def strategy_rows(html: str) -> dict[tuple[str, str], dict[str, str]]:
    """The "each strategy on each deployment" table: (deployment, strategy) -> its cells."""
    table = html.split('data-testid="strategy-results"')[1].split("</table>")[0]
    rows = {}
    for found in re.finditer(
        r'<tr data-testid="strategy-row" data-deployment="([^"]+)" data-strategy="([^"]+)">'
        r"(.*?)</tr>",
        table,
        re.S,
    ):
        cells = dict(re.findall(r'<td[^>]*data-testid="(\w+)">(.*?)</td>', found.group(3), re.S))
        rows[(found.group(1), found.group(2))] = {k: unescape(v) for k, v in cells.items()}
    return rows


def test_each_strategy_row_shows_only_what_that_strategy_adds(
    client: Client, carol, assessment: Assessment
) -> None:
    client.force_login(carol)
    rows = strategy_rows(client.get(f"/assessments/{assessment.pk}/").content.decode())

    assert len(rows) == 10
    for (name, strategy), row in rows.items():
        result = assessment.strategies[name][strategy]
        added = result["reference"]["usd_per_month"] - result["projected"]["usd_per_month"]
        assert row["adds"] == usd(added), (name, strategy)
        # the verdict never contradicts the figure beside it
        assert row["verdict"] != "recommended" or added > 0, (name, strategy)
        assert row["verdict"] == result["status"].replace("_", " ")
    # llama runs 3 replicas where 2 (the redundancy rule's floor; the load needs 1) meet the
    # SLOs: what that saves is right-sizing's, not speculative decoding's, which at that size
    # only cuts TPOT p95
    today = assessment.plan["deployments"][0]["baseline"]["usd_per_month"]
    speculative = rows[("llama", "speculative")]
    reference = assessment.strategies["llama"]["speculative"]["reference"]["usd_per_month"]
    assert reference == today * 2 / 3
    assert speculative["verdict"] == "not recommended"
    assert speculative["adds"] == "$0.00"
    assert speculative["why"].startswith("not recommended: no cost gain: it cuts TPOT p95 to ")
    assert usd(today - reference) not in speculative["why"]
    # sharing says why it declined, with the figures
    sharing = rows[("llama", "sharing")]
    assert sharing["verdict"] == "not recommended"
    # (the redundancy rule keeps 2 replicas of llama, which co-location does not take)
    assert sharing["why"].startswith(
        "not recommended: co-location: it needs 2 replicas at its peak; only single-replica "
        "deployments are co-located"
    )
    assert sharing["why"].endswith(
        "rotation: the redundancy rule keeps at least 2 replicas (default: today runs 3, so one "
        "can fail or restart while another serves) awake"
    )


def test_negative_money_reads_minus_dollar(client: Client, carol, assessment: Assessment) -> None:
    Assessment.objects.filter(pk=assessment.pk).update(
        plan={**assessment.plan, "savings_usd_per_month": -4060.4}
    )
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    kpi = html.split('data-testid="kpi-savings"')[1].split("</div>")[0]
    assert "-$4,060" in kpi
    assert "$-" not in html


def test_a_strategy_cell_measures_against_the_reference_it_was_applied_to() -> None:
    def result(status: str, projected: float, **more: Any) -> dict[str, Any]:
        return {"status": status, "summary": "", "baseline": {"usd_per_month": 300.0},
                "projected": {"usd_per_month": projected}, **more}  # fmt: skip

    cells = {
        c.strategy: (c.status, c.savings_usd_per_month, c.savings_fraction)
        for c in strategy_cells(
            {
                "quantization": result("recommended", 150.0, reference={"usd_per_month": 200.0}),
                "batching": result("not_recommended", 200.0, reference={"usd_per_month": 200.0}),
                "speculative": result("recommended", 100.0),  # stored before references
                "autoscaling": result("infeasible", 400.0, reference={"usd_per_month": 300.0}),
                "sharing": result("not_applicable", 300.0),
            }
        )
    }
    assert cells == {
        "quantization": ("recommended", 50.0, 0.25),
        "batching": ("not_recommended", 0.0, 0.0),
        "speculative": ("recommended", 200.0, 2 / 3),
        "autoscaling": ("infeasible", None, None),
        "sharing": ("not_applicable", None, None),
    }


def cost_energy_rows(html: str) -> dict[str, list[str]]:
    """The cost-and-energy table: name -> its cells after the name."""
    table = html.split('data-testid="cost-energy"')[1].split("</table>")[0]
    return {
        found.group(1): re.findall(r'<td class="num">(.*?)</td>', found.group(2))
        for found in re.finditer(
            r'<tr data-testid="cost-energy-row" data-name="([^"]+)">(.*?)</tr>', table, re.S
        )
    }


def test_it_shows_cost_and_energy_today_beside_the_plan(
    client: Client, carol, assessment: Assessment
) -> None:
    client.force_login(carol)
    rows = cost_energy_rows(client.get(f"/assessments/{assessment.pk}/").content.decode())

    plan = assessment.plan
    expected = {
        item["deployment"]: (item["baseline"], item["plan"]) for item in plan["deployments"]
    }
    expected["fleet"] = (plan["fleet_baseline"], plan["fleet_plan"])
    assert list(rows) == ["llama", "qwen", "fleet"]
    for name, (today, after) in expected.items():
        assert rows[name] == [
            usd(today["usd_per_month"]), usd(after["usd_per_month"]),
            f"{today['energy_kwh_per_month']:,.0f}", f"{after['energy_kwh_per_month']:,.0f}",
            f"{today['energy_j_per_output_token']:,.2f}",
            f"{after['energy_j_per_output_token']:,.2f}",
        ], name  # fmt: skip
    # the engine's figures, not canned ones: the plan's fewer GPUs idle less
    fleet = plan["fleet_plan"]["energy_kwh_per_month"]
    assert 0 < fleet < plan["fleet_baseline"]["energy_kwh_per_month"]
    assert fleet == pytest.approx(
        sum(item["plan"]["energy_kwh_per_month"] for item in plan["deployments"])
    )


def test_energy_of_a_projection_stored_before_kwh_was_kept() -> None:
    # 2 J/token at 500 tokens/s is a mean 1,000 W; 730 hours a month ($2,920 / $4) = 730 kWh
    stored = {"energy_j_per_output_token": 2.0, "output_tokens_per_s": 500.0,
              "usd_per_month": 2920.0, "usd_per_hour": 4.0}  # fmt: skip
    assert energy_of(stored) == (pytest.approx(730.0), 2.0)
    assert energy_of({**stored, "energy_kwh_per_month": 700.0}) == (700.0, 2.0)
    assert energy_of({**stored, "energy_j_per_output_token": "Infinity"}) == (None, None)
    assert energy_of(None) == (None, None)


def test_what_a_deployment_not_assessed_has_is_said_in_words_and_units(
    client: Client, carol, assessment: Assessment
) -> None:
    gaps = assessment.data_gaps
    gaps[0]["have"] = {"request_records": 0, "imported_trace": False, "telemetry_hours": 2.0,
                       "vllm_counter_hours": 0.0}  # fmt: skip
    assessment.save(update_fields=["data_gaps"])
    client.force_login(carol)
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    section = page.split('data-testid="data-gaps"')[1].split("</section>")[0]
    have = section.split('<td class="wrap muted">')[1].split("</td>")[0]
    assert sorted(have.split("; ")) == [  # jsonb keeps its own key order
        "imported trace: no", "load telemetry (h): 2", "request records (requests): 0",
        "vLLM request counters (h): 0",
    ]  # fmt: skip
    assert "False" not in page
    assert "imported_trace" not in page


def test_the_baseline_table_puts_each_slo_under_its_latency(
    client: Client, carol, assessment: Assessment
) -> None:
    client.force_login(carol)
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    table = page.split('data-testid="baseline-vs-plan"')[1].split("</table>")[0]
    assert table.count('<span class="muted slo">SLO ≤ 2.00 s</span>') == 2
    assert table.count('<span class="muted slo">SLO ≤ 100 ms</span>') == 2


def test_measured_and_simulated_today_count_the_same_gpus_and_place_the_rest(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    # Issue 16, item 7: "19.0 GPUs" measured beside "21.0 GPUs" simulated. Measured counted
    # GPU-hours / window hours, so chat (2 GPUs, 1 h of telemetry in the day, held at today's
    # cost) counted 0.08 GPUs there and 2 in the simulated totals.
    assessment = assessment_with_weak_evidence(cluster=small_fleet.cluster, end=END)
    chat = assessment.measured["deployments"]["chat"]
    chat.update(gpus_mean=2 / 24, gpu_hours=2.0, usd_per_month=2.0 * 4.0 / 24 * 730)
    assessment.measured["fleet"]["gpu_count"] = 8  # llama 3, qwen 2, chat 2, 1 unassigned
    assessment.save(update_fields=["measured"])
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()

    measured = html.split('data-testid="kpi-measured"')[1].split("</div>")[0]
    simulated = html.split('data-testid="kpi-simulated"')[1].split("</div>")[0]
    assert assessment.plan["fleet_baseline"]["gpus"] == 7.0  # 3 + 2 simulated, chat's 2 held
    assert "deployments in the totals · 7.0 GPUs" in measured
    assert "· 7.0 GPUs ·" in simulated
    accounting = html.split('data-testid="gpu-accounting">')[1].split("</p>")[0]
    assert accounting.startswith(
        "The cluster&#x27;s 8 GPUs: 7 in the assessment&#x27;s totals; 1 assigned to no "
        "deployment. Measured and simulated today cover the same deployments: "
    )


def test_the_combination_table_names_load_over_capacity_apart_from_gpu_utilization(
    client: Client, carol, assessment: Assessment
) -> None:
    # Issue 16, item 7: "GPU utilization" 23.7% in this table beside a measured 64%: the
    # engine's load / capacity, a different quantity from NVML's busy time.
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    head = html.split('data-testid="combinations"')[1].split("</thead>")[0]
    assert ">GPU utilization</th>" not in head
    assert f'title="{escape(definition("load_capacity"))}">load / capacity</th>' in head
    first = assessment.plan["combinations"][0]["utilization"]
    assert f'<td class="num">{first * 100:.1f}%</td>' in html.split('data-testid="combinations"')[1]
    assert "GPU utilization: " + escape(definition("gpu_utilization")) in html


def test_the_gpu_accounting_names_the_deployments_not_assessed() -> None:
    text = gpu_accounting(
        cluster_gpus=22, in_totals=18, not_assessed={"llama-3-8b-batch": 2}, unassigned=2
    )
    assert text == (
        "The cluster's 22 GPUs: 18 in the assessment's totals; 2 in deployments not assessed "
        "(llama-3-8b-batch: 2); 2 assigned to no deployment."
    )
    shared = gpu_accounting(cluster_gpus=4, in_totals=4, not_assessed={"b": 1}, unassigned=0)
    assert shared.endswith("(a GPU that serves two deployments counts in each).")


def test_the_page_says_a_move_to_another_gpu_kind_in_words(
    client: Client, carol, assessment: Assessment
) -> None:
    plan = assessment.plan
    llama = next(p for p in plan["deployments"] if p["deployment"] == "llama")
    llama["move"] = "llama: H100-SXM x3 -> L4 x2, -$9,593/month, TTFT p95 80 ms -> 130 ms"
    assessment.plan = plan
    assessment.save(update_fields=["plan"])
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    line = html.split('data-testid="hardware-move"')[1].split("</p>")[0]
    assert (
        "<strong>llama: H100-SXM x3 -&gt; L4 x2, -$9,593/month, TTFT p95 80 ms -&gt; 130 ms" in line
    )
    assert "a rollout cannot change GPU kinds" in line
    assert html.count('data-testid="hardware-move"') == 1


REUSE = [
    {"reuse_share": 0.0, "usd_per_month": 8760.0, "meets_slo": True},
    {"reuse_share": 0.3, "usd_per_month": 5840.0, "meets_slo": True},
    {"reuse_share": 0.6, "usd_per_month": 2920.0, "meets_slo": True},
]
REUSE_LINE = "llama: prefix reuse unknown: plan $8,760/month at 0%, $5,840 at 30%, $2,920 at 60%"


def _with_reuse_only_on_llama(assessment: Assessment) -> None:
    plan = assessment.plan
    for item in plan["deployments"]:
        item["prefix_reuse"] = REUSE if item["deployment"] == "llama" else []
    assessment.plan = plan
    assessment.save(update_fields=["plan"])


def test_the_engine_shows_the_plan_at_assumed_reuse_for_samples_without_hashes(
    assessment: Assessment,
) -> None:
    # the fixture's samples carry no block hashes: each assessed deployment gets 0/30/60%
    for item in assessment.plan["deployments"]:
        if item["status"] != "ok":
            continue
        points = item["prefix_reuse"]
        assert [p["reuse_share"] for p in points] == [0.0, 0.3, 0.6]
        costs = [p["usd_per_month"] for p in points]
        assert costs == sorted(costs, reverse=True)  # reuse never costs more


def test_the_page_says_the_plan_at_assumed_prefix_reuse_in_one_line(
    client: Client, carol, assessment: Assessment
) -> None:
    _with_reuse_only_on_llama(assessment)
    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/").content.decode()
    listed = html.split('data-testid="prefix-reuse"')[1].split("</ul>")[0]
    assert re.findall(r"<li>(.*?)</li>", listed) == [REUSE_LINE]


def test_the_report_says_the_plan_at_assumed_prefix_reuse(small_fleet: SmallFleet) -> None:
    from django.template.loader import render_to_string

    from dashboard.reports.content import report_content
    from dashboard.windows import Window

    _with_reuse_only_on_llama(assessment_completed(cluster=small_fleet.cluster, end=END))
    window = Window("7d", END - timedelta(days=7), END, end_given=True)
    content = report_content(cluster=small_fleet.cluster, window=window)
    section = next(s for s in content.sections if s.key == "assessment")
    html = render_to_string(section.template, {"section": section, "src": {}})
    listed = html.split("<h3>Prefix reuse unknown</h3>")[1].split("</ul>")[0]
    assert re.findall(r"<li>(.*?)</li>", listed) == [REUSE_LINE]
    text = render_to_string(section.text_template, {"section": section})
    assert f"\n    {REUSE_LINE}\n" in text
