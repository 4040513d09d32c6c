"""The per-strategy rows of an assessment in a real browser: verdicts beside what each adds.

Issue 16 item 6: "recommended" beside a negative saving, right-sizing credited to every
strategy, sharing's reason that named no cause. Screenshot: var/screenshots/strategy-rows.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.formatting import usd
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
        assert seen[("qwen", "sharing")][1].startswith(
            "not recommended: co-location: with llama on one H100-SXM: "
        )
        page.locator("[data-testid=strategy-results]").scroll_into_view_if_needed()
        screenshot(page, "strategy-rows")
    assert problems == []
