"""The dashboard in a real browser (headless Chromium): log in, see the fleet, open an
assessment, run a what-if and start a benchmark on a real Celery worker (progress polled by
the page), a rollout page updating itself from its status poll, the demo's pages, and what a
viewer may not see.

One Chromium serves the module (and pytest-django's live server the session); every test
uses its own browser context, so its own login. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from advisor.models import Assessment, BenchmarkJob, JobStatus
from dashboard.models import WhatIf, WhatIfStatus
from dashboard.whatif import whatif_claim, whatif_execute
from tests.advisor.benchmarking.fake_openai import fake_server_thread
from tests.dashboard.assessed import (
    assessment_completed,
    assessment_with_big,
    assessment_with_weak_evidence,
)
from tests.dashboard.conftest import END
from tests.dashboard.test_benchmarks import endpoint_create
from tests.support.browser import browser_session, log_in, new_page, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_session() as running:
        yield running


def charts_drawn(page: Any, count: int) -> None:
    """Wait until `count` charts are drawn (a locator: the CSP forbids evaluating strings)."""
    page.locator(".chart[data-drawn=true]").nth(count - 1).wait_for(timeout=30_000)


def test_an_admin_logs_in_and_sees_the_fleet_drawn(
    browser: Any, live_server: Any, alice, synthetic_fleet: Any
) -> None:
    with new_page(browser) as (page, problems):
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

        # the admin role enters the Django admin (no staff flag: roles are groups)
        page.click("nav[aria-label=Main] >> text=Admin")
        page.wait_for_load_state("load")
        assert page.url == f"{live_server.url}/admin/"
        assert page.locator("text=Price sheets").count() >= 1
    assert problems == []  # no script errors, no CSP refusals


def test_an_operator_runs_a_what_if_on_the_worker_and_waits_for_its_result(
    browser: Any, live_server: Any, bob, synthetic_fleet: Any, celery_worker: Any
) -> None:
    assessment = assessment_completed(
        cluster=synthetic_fleet.cluster,
        end=datetime.now(UTC).replace(minute=0, second=0, microsecond=0),
    )
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "bob")
        page.click("nav[aria-label=Main] >> text=Assessments")
        page.click(f"[data-testid=assessments] >> text={assessment.pk}")
        page.wait_for_load_state("load")
        charts_drawn(page, 4)  # waterfall, cost per deployment, strategies, sensitivity
        plan_usd = assessment.plan["fleet_plan"]["usd_per_month"]
        assert page.inner_text("[data-testid=kpi-plan] .value") == f"${plan_usd:,.0f}"
        assert page.locator(".chart[data-figure=fig-waterfall] .main-svg").count() >= 1
        screenshot(page, "assessment-operator")

        page.click("[data-testid=whatif-link]")
        page.fill("[data-testid=price-H100-SXM]", "2")
        page.uncheck("[data-testid=strategy-speculative]")
        page.click("[data-testid=whatif-run]")
        page.wait_for_url(f"{live_server.url}/whatifs/*/")
        # the worker simulates; the page polls progress.json and reloads when it is done
        page.wait_for_selector("[data-testid=whatif-result]", timeout=120_000)
        whatif = WhatIf.objects.get()
        assert whatif.status == WhatIfStatus.COMPLETED, whatif.error
        assert whatif.described == [
            "price of H100-SXM $4 -> $2 per GPU-hour",
            "strategies: without speculative",
        ]
        shown = page.inner_text("[data-testid=kpi-whatif-plan] .value")
        assert shown == f"${whatif.plan['fleet_plan']['usd_per_month']:,.0f}"
        charts_drawn(page, 2)
        screenshot(page, "whatif-result")
    assert problems == []


def test_an_operator_starts_a_benchmark_on_the_worker_against_an_endpoint(
    browser: Any, live_server: Any, bob, celery_worker: Any
) -> None:
    with fake_server_thread() as (url, server):
        server.behaviour.itl_s = 0.01  # a run of a second or so: progress has time to show
        endpoint = endpoint_create(url)
        with new_page(browser) as (page, problems):
            log_in(page, live_server.url, "bob")
            page.goto(f"{live_server.url}/benchmarks/")
            form = "[data-testid=start-benchmark]"
            page.select_option(f"{form} select[name=endpoint]", str(endpoint.pk))
            page.select_option(f"{form} select[name=kind]", "sweep")
            page.fill(f"{form} input[name=num_requests]", "16")
            page.fill(f"{form} input[name=prompt_tokens]", "32")
            page.fill(f"{form} input[name=output_tokens]", "16")
            page.fill(f"{form} input[name=sweep_values]", "1, x")
            page.click("[data-testid=benchmark-start]")
            page.wait_for_load_state("load")
            # a bad value is named on its field, and nothing started
            assert "sweep.values[1]: not a number" in page.inner_text(
                "[data-testid=error-sweep_values]"
            )
            assert not BenchmarkJob.objects.exists()
            screenshot(page, "benchmark-form-error")

            page.fill(f"{form} input[name=sweep_values]", "1, 4")
            page.click("[data-testid=benchmark-start]")
            page.wait_for_url(f"{live_server.url}/benchmarks/*/")
            page.locator("[data-testid=job-status]", has_text="Completed").wait_for(timeout=120_000)
            job = BenchmarkJob.objects.get()
            assert job.status == JobStatus.COMPLETED, job.error
            assert page.locator("[data-testid=runs] tbody tr").count() == 2
            charts_drawn(page, 3)  # predicted vs measured, errors, the sweep
            kpi = page.inner_text("[data-testid=kpi-prediction-error] .value")
            assert kpi.endswith("%")
            screenshot(page, "benchmark-job")
        # the form error's 400 answer is the only console message allowed
        assert [p for p in problems if "status of 400" not in p] == []


def test_a_viewer_sees_no_rollout_start_or_admin_controls(
    browser: Any, live_server: Any, carol, synthetic_fleet: Any
) -> None:
    assessment = assessment_completed(
        cluster=synthetic_fleet.cluster, end=datetime.now(UTC) - timedelta(hours=1)
    )
    with new_page(browser) as (page, problems):
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

        page.goto(f"{live_server.url}/rollouts/")
        assert page.locator("[data-testid=propose-link]").count() == 0
        assert page.locator("form[method=post] button").count() == 1  # log out only
        page.goto(f"{live_server.url}/assessments/")
        assert page.locator("[data-testid=start-assessment]").count() == 0
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        assert page.locator("[data-testid=assessment-actions]").count() == 0
        assert page.locator("[data-testid=propose-plan]").count() == 0
        screenshot(page, "assessment-viewer")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/whatif/")
        assert page.locator("[data-testid=whatif-form]").count() == 0
        page.goto(f"{live_server.url}/benchmarks/")
        assert page.locator("[data-testid=start-benchmark]").count() == 0
        assert page.locator("form[method=post] button").count() == 1  # log out only

        response = page.goto(f"{live_server.url}/traces/import/")
        assert response is not None
        assert response.status == 403
        response = page.goto(f"{live_server.url}/rollouts/new/")
        assert response is not None
        assert response.status == 403
    # The 403 pages' own console messages are the only ones allowed.
    assert [p for p in problems if "403" not in p] == []


def test_the_demo_pages_draw_in_the_browser(
    browser: Any, live_server: Any, alice, settings: Any, tmp_path: Any
) -> None:
    settings.VAR_DIR = tmp_path
    call_command("demo", stdout=StringIO())
    assessment = Assessment.objects.get(cluster__name="demo")
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "alice")
        assert page.locator("[data-testid=demo-notice]").count() == 1
        charts_drawn(page, 3)
        screenshot(page, "demo-fleet")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        charts_drawn(page, 4)
        plan_usd = assessment.plan["fleet_plan"]["usd_per_month"]
        assert page.inner_text("[data-testid=kpi-plan] .value") == f"${plan_usd:,.0f}"
        assert page.locator("[data-testid=data-gaps]").count() == 1
        screenshot(page, "demo-assessment")
        chat = assessment.inputs["deployments"]["llama-3-70b-chat"]["id"]
        page.goto(f"{live_server.url}/deployments/{chat}/?window=24h")
        charts_drawn(page, 5)  # vLLM's queue, KV, rates, tokens, latency
        screenshot(page, "demo-deployment")
        page.goto(f"{live_server.url}/traces/?deployment={chat}&window=24h")
        charts_drawn(page, 3)
        screenshot(page, "demo-traces")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/whatif/")
        screenshot(page, "demo-whatif-form")
    assert problems == []


def test_a_rollout_page_shows_new_audit_events_without_a_reload(
    browser: Any, live_server: Any, alice, bob
) -> None:
    from advisor.services.rollouts import audit, rollout_propose
    from tests.advisor.rollouts.helpers import fleet

    nodes = fleet(1).nodes
    rollout = rollout_propose(
        user=bob,
        nodes=[nodes[0].id],
        change={"title": "bigger batches", "engine_args": {"max_num_seqs": 512}},
    )
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/rollouts/{rollout.id}/")
        events = page.locator("[data-rollout-events] tr")
        shown = events.count()
        loads: list[str] = []
        page.on("load", lambda _page: loads.append("load"))
        audit(rollout, "checked by the browser test", kind="note")
        events.nth(shown).wait_for(timeout=15_000)  # the 3 s poll brought it in
        assert "checked by the browser test" in events.nth(shown).inner_text()
        assert loads == []  # updated in place, not by reloading the page
        screenshot(page, "rollout-live")
    assert problems == []


def test_a_viewer_sees_why_confidence_falls_and_that_a_what_if_is_infeasible(
    browser: Any, live_server: Any, carol, small_fleet: Any
) -> None:
    # Issue 16, items 3 and 4: each row says its confidence and why; a deployment below the
    # data floor is not priced; a what-if whose change does not fit says so in its headline.
    assessment = assessment_with_weak_evidence(cluster=small_fleet.cluster, end=END)
    big = assessment_with_big(cluster=small_fleet.cluster, end=END - timedelta(days=1))
    changes = {"deployments": {"big": {"hardware": "L4", "tensor_parallel": 1}}}
    whatif = WhatIf.objects.create(assessment=big, changes=changes, described=["big on one L4"])
    assert whatif_claim(whatif_id=whatif.pk)
    whatif = whatif_execute(whatif_id=whatif.pk)
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "carol")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        rows = page.locator("[data-testid=confidence-row]")
        assert rows.count() == 3
        texts = {row.split(" · ")[0]: row for row in rows.all_inner_texts()}
        assert texts["qwen"].startswith(
            "qwen · confidence low: 60% of the window's minutes assumed (864 of 1,440"
        )
        assert texts["chat"].startswith(
            "chat · confidence not enough data: not enough data: 60 of 1,440"
        )
        chat = page.locator("[data-testid=deployment-row]", has_text="chat").inner_text()
        assert "not priced" in chat
        assert "$5,840" in chat
        assert page.inner_text("[data-testid=not-priced]").startswith(
            "Not enough data, not priced: chat stays at today's cost (2 GPUs, $5,840/month)"
        )
        assert "at least 10% of the window's minutes" in page.inner_text("[data-testid=data-floor]")
        simulated = assessment.plan["fleet_baseline"]["usd_per_month"]
        assert page.inner_text("[data-testid=kpi-simulated] .value") == f"${simulated:,.0f}"
        screenshot(page, "assessment-confidence")

        page.goto(f"{live_server.url}/whatifs/{whatif.pk}/")
        headline = page.inner_text("[data-testid=whatif-infeasible]")
        assert headline.startswith("This what-if is infeasible for big: the change does not fit")
        assert "the model does not fit" in headline
        savings = page.inner_text("[data-testid=kpi-whatif-savings]")
        fraction = whatif.plan["savings_fraction"]
        assert f"{fraction * 100:.1f}% vs today under the changes" in savings
        assert "infeasible for big: counted at today's cost" in savings
        screenshot(page, "whatif-infeasible")
    assert problems == []


def test_an_operator_shifts_the_azure_trace_and_sees_the_plans_constraints(
    browser: Any, live_server: Any, bob, small_fleet: Any
) -> None:
    """Issue 16 items 2 and 5 in the browser: "end now" with its provenance; the rule shown."""
    from django.conf import settings

    from tests.dashboard.conftest import END

    trace = settings.BASE_DIR / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_code.csv"
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "bob")
        page.goto(f"{live_server.url}/traces/")
        form = page.locator("[data-testid=import-form]")
        form.locator("#id_format").select_option("azure")
        form.locator("#id_file").set_input_files(str(trace))
        form.locator("#id_shift_end_now").check()
        form.locator("button[type=submit]").click()
        page.wait_for_load_state("load")
        report = page.inner_text("[data-testid=import-report]")
        assert "imported 8819 requests" in report
        assert "(end now: shifted +" in report
        assert page.locator("[data-testid=import-warning]").count() == 0
        page.goto(f"{live_server.url}/traces/")
        row = page.inner_text("[data-testid=import-row]")
        assert "2023-11-16 18:17:03 \u2013 2023-11-16 19:14:19" in row
        assert "end now: +" in row
        screenshot(page, "traces-shifted")

        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        table = page.locator("[data-testid=plan-constraints]")
        llama = table.locator("[data-testid=constraint-row]", has_text="llama").inner_text()
        assert "at least 2 replicas (default: today runs 3" in llama
        assert "kept by the rule: the load alone needs 1" in llama
        box = table.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 1400  # no horizontal overflow at 1400 px
        screenshot(page, "assessment-constraints")
    assert problems == []


def test_a_viewer_reads_one_meaning_per_word(
    browser: Any, live_server: Any, carol, small_fleet: Any
) -> None:
    # Issue 16, item 7: measured and simulated today over the same deployments and GPUs, the
    # cluster's other GPUs placed, "load / capacity" apart from GPU utilization, idle defined
    # in minutes.
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    in_totals = sum(
        assessment.measured["deployments"][name]["usd_per_month"] for name in ("llama", "qwen")
    )
    with new_page(browser) as (page, problems):
        log_in(page, live_server.url, "carol")
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/")
        assert page.inner_text("[data-testid=kpi-measured] .value") == f"${in_totals:,.0f}"
        assert "assessed deployments · 5.0 GPUs" in page.inner_text("[data-testid=kpi-measured]")
        assert "· 5.0 GPUs ·" in page.inner_text("[data-testid=kpi-simulated]")
        assert page.inner_text("[data-testid=gpu-accounting]").startswith(
            "The cluster's 6 GPUs: 5 in the assessment's totals; 1 assigned to no deployment."
        )
        head = page.locator("[data-testid=combinations] thead").inner_text()
        assert "load / capacity" in head
        assert "GPU utilization" not in head
        screenshot(page, "assessment-words")

        page.goto(f"{live_server.url}/assessments/")
        assert page.inner_text("[data-testid=measured-today]") == f"${in_totals:,.0f}"

        page.goto(f"{live_server.url}/?window=7d&end={END.isoformat().replace('+', '%2B')}")
        page.locator("details.card summary").click()
        idle = page.inner_text("[data-testid=idle-definition]")
        assert "utilization stayed below 5% (every sample of the minute)" in idle
        screenshot(page, "fleet-words")
    assert problems == []
