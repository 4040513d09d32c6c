"""An assessment's rows in a real browser: strategy verdicts, $ and energy beside the plan.

Issue 16 item 6: "recommended" beside a negative saving, right-sizing credited to every
strategy, sharing's reason that named no cause. Item 10: energy computed but never shown.
Screenshots: var/screenshots/strategy-rows.png, cost-energy.png, deployment-energy.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.formatting import usd
from probes.models import ModelDeployment
from tests.dashboard.assessed import assessment_completed
from tests.support.browser import browser_session, log_in, new_page, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_session() as running:
        yield running


def test_a_viewer_sees_each_strategy_row_agree_with_its_figure(
    browser: Any, live_server: Any, carol, synthetic_fleet: Any
) -> None:
    assessment = assessment_completed(
        cluster=synthetic_fleet.cluster, end=datetime.now(UTC) - timedelta(hours=1)
    )
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "carol")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        rows = page.locator("[data-testid=strategy-row]")
        assert rows.count() == 10
        seen = {}
        for i in range(rows.count()):
            row = rows.nth(i)
            name = row.get_attribute("data-deployment")
            strategy = row.get_attribute("data-strategy")
            result = assessment.strategies[name][strategy]
            added = result["reference"]["usd_per_month"] - result["projected"]["usd_per_month"]
            verdict = row.locator("[data-testid=verdict]").inner_text()
            assert row.locator("[data-testid=adds]").inner_text() == usd(added)
            assert verdict != "recommended" or added > 0
            seen[(name, strategy)] = (verdict, row.locator("[data-testid=why]").inner_text())
        assert seen[("llama", "speculative")][0] == "not recommended"
        assert "no cost gain" in seen[("llama", "speculative")][1]
        assert "busy or full" not in " ".join(why for _, why in seen.values())
        # qwen runs 2 replicas today: the redundancy rule keeps both, so it is not co-located
        assert seen[("qwen", "sharing")][1].startswith(
            "not recommended: co-location: it needs 2 replicas at its peak; only single-replica "
            "deployments are co-located"
        )
        page.locator("[data-testid=strategy-results]").scroll_into_view_if_needed()
        screenshot(page, "strategy-rows")
    assert problems == []


def test_a_viewer_sees_cost_and_energy_today_and_in_the_plan(
    browser: Any, live_server: Any, carol, synthetic_fleet: Any
) -> None:
    cluster = synthetic_fleet.cluster
    assessment = assessment_completed(cluster=cluster, end=datetime.now(UTC) - timedelta(hours=1))
    qwen = ModelDeployment.objects.create(cluster=cluster, served_name="qwen", model_id="q")
    plan = assessment.plan
    fleet = [
        usd(plan["fleet_baseline"]["usd_per_month"]),
        usd(plan["fleet_plan"]["usd_per_month"]),
        f"{plan['fleet_baseline']['energy_kwh_per_month']:,.0f}",
        f"{plan['fleet_plan']['energy_kwh_per_month']:,.0f}",
        f"{plan['fleet_baseline']['energy_j_per_output_token']:,.2f}",
        f"{plan['fleet_plan']['energy_j_per_output_token']:,.2f}",
    ]
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "carol")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        row = page.locator("[data-testid=cost-energy-row][data-name=fleet]")
        assert row.locator("td.num").all_inner_texts() == fleet
        card = page.locator("[data-testid=cost-energy-card]")
        card.scroll_into_view_if_needed()
        table_box = page.locator("[data-testid=cost-energy]").bounding_box()
        card_box = card.bounding_box()
        assert table_box["x"] + table_box["width"] <= card_box["x"] + card_box["width"]
        screenshot(page, "cost-energy")

        page.goto(f"{live_server.url}/deployments/{qwen.pk}/")
        card = page.locator("[data-testid=deployment-plan]")
        assert card.locator("a").first.inner_text() == f"assessment #{assessment.pk}"
        item = next(p for p in plan["deployments"] if p["deployment"] == "qwen")
        cells = card.locator("[data-testid=cost-energy-row][data-name=qwen] td.num")
        assert cells.all_inner_texts()[2:4] == [
            f"{item['baseline']['energy_kwh_per_month']:,.0f}",
            f"{item['plan']['energy_kwh_per_month']:,.0f}",
        ]
        card.scroll_into_view_if_needed()
        screenshot(page, "deployment-energy")
    assert problems == []
