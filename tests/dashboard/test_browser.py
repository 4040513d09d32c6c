"""The dashboard in a real browser (headless Chromium): log in, see the fleet, roles' controls."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import browser_page, log_in, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def charts_drawn(page: Any, count: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('.chart[data-drawn=true]').length >= {count}",
        timeout=30_000,
    )


def test_an_admin_logs_in_and_sees_the_fleet_drawn(
    live_server: Any, alice, synthetic_fleet: Any
) -> None:
    with browser_page() as (page, problems):
        log_in(page, live_server.url, "alice")
        assert page.url == f"{live_server.url}/"
        assert page.inner_text("[data-testid=who]") == "alice"
        assert page.inner_text("[data-testid=role]") == "admin"
        assert page.inner_text("[data-testid=kpi-gpus] .value") == "8"
        charts_drawn(page, 3)  # heatmap, idle bars, utilization histogram
        # Plotly drew real SVG into the heatmap container (not an empty div).
        assert page.locator(".chart[data-figure=fig-heatmap] .main-svg").count() >= 1
        screenshot(page, "fleet-admin")

        page.click("text=All 8 GPUs, sortable")
        assert page.locator("[data-testid=gpus] tbody tr").count() == 8
        page.locator("[data-testid=gpus] tbody tr a").first.click()
        page.wait_for_load_state("load")
        charts_drawn(page, 4)  # util, memory, power, SM activity
        screenshot(page, "gpu-detail")

        page.goto(f"{live_server.url}/reports/")
        assert page.locator("[data-testid=generate-report]").count() == 1
        assert page.locator("[data-testid=schedule-form]").count() == 1
        screenshot(page, "reports-admin")
    assert problems == []  # no script errors, no CSP refusals


def test_a_viewer_sees_no_operator_or_admin_controls(
    live_server: Any, carol, synthetic_fleet: Any
) -> None:
    with browser_page() as (page, problems):
        log_in(page, live_server.url, "carol")
        assert page.inner_text("[data-testid=role]") == "viewer"
        charts_drawn(page, 3)
        nav = page.inner_text("nav[aria-label=Main]")
        assert "Admin" not in nav
        assert page.locator("[data-testid=admin-add-price]").count() == 0
        screenshot(page, "fleet-viewer")

        page.goto(f"{live_server.url}/reports/")
        assert page.locator("[data-testid=generate-report]").count() == 0
        assert page.locator("[data-testid=schedule-form]").count() == 0
        page.goto(f"{live_server.url}/traces/")
        assert page.locator("[data-testid=import-form]").count() == 0
        screenshot(page, "traces-viewer")

        response = page.goto(f"{live_server.url}/traces/import/")
        assert response is not None
        assert response.status == 403
    # The 403 page's own console message is the only one allowed.
    assert [p for p in problems if "403" not in p] == []
