"""Every main page of the demo fleet at 1400 px wide, as admin: no table wider than its card.

The fleet is `manage.py demo`'s (real Azure trace traffic, one assessment), plus what the demo
does not make: a sweep benchmark job run against the fake OpenAI server (in-process in tests),
a completed what-if, a proposed rollout and a ledger entry. Each page's main tables must fit:
neither the table nor the card it sits in scrolls sideways (scrollWidth <= clientWidth), nor
the page itself. A screenshot of each page goes to var/screenshots/width-<page>.png.

Run: CI=true DATABASE_URL=postgres://... TEST_REDIS_URL=redis://.../N \
     .venv/bin/pytest tests/dashboard/test_browser_widths.py
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from advisor.models import Assessment, BenchmarkJob, BenchmarkRun, LedgerEntry
from advisor.services.rollouts import rollout_propose
from dashboard.labels import LABELS
from dashboard.models import WhatIf, WhatIfStatus
from probes.models import Gpu, ModelDeployment, Node
from tests.advisor.benchmarking.fake_openai import fake_server_thread
from tests.dashboard.test_benchmarks import ab_job_stored, endpoint_create
from tests.support.browser import browser_session, log_in, new_page, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WIDTH_PX = 1400
# Each element's scrollWidth and clientWidth, and the card (or other parent) it sits in: a
# table wider than its card makes the card scroll (`.card { overflow-x: auto }`).
MEASURE = """elements => elements.map(e => {
  const box = e.closest('.card') || e.parentElement;
  return {testid: e.dataset.testid || e.tagName, scroll: e.scrollWidth, client: e.clientWidth,
          box_scroll: box.scrollWidth, box_client: box.clientWidth};
})"""


# The text a reader sees: without <code>, <pre>, scripts and closed <details>' bodies.
READABLE_TEXT = """main => {
  const copy = main.cloneNode(true);
  copy.querySelectorAll('code, pre, script, details:not([open]) > :not(summary)')
    .forEach(e => e.remove());
  return copy.innerText;
}"""
PAGE_WIDTHS = "e => [e.scrollWidth, e.clientWidth]"
FORMS_ONLY = {"trace-import", "whatif-form", "rollout-new", "reports"}  # pages without a table


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_session() as running:
        yield running


def _benchmark_sweep() -> BenchmarkJob:
    """A sweep of two concurrencies on the fake server, with the engine's prediction.

    In a thread of its own: the benchmark client runs its own event loop, and Playwright's
    sync API already runs one in this thread.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_benchmark_sweep_here).result()


def _benchmark_sweep_here() -> BenchmarkJob:
    try:
        return _benchmark_sweep_run()
    finally:
        connection.close()


def _benchmark_sweep_run() -> BenchmarkJob:
    with fake_server_thread() as (url, server):
        server.behaviour.itl_s = 0.001
        endpoint = endpoint_create(url)
        client = Client()
        client.force_login(User.objects.get(username="bob"))
        response = client.post("/benchmarks/", {
            "endpoint": endpoint.pk, "kind": "sweep", "workload_kind": "concurrency",
            "num_requests": "8", "concurrency": "2", "prompt_tokens": "32", "output_tokens": "8",
            "burstiness": "1.0", "warmup_requests": "0", "sweep_values": "1, 4",
        })  # fmt: skip
        assert response.status_code == 302, response.content.decode()[:2000]
    job = BenchmarkJob.objects.get()
    assert BenchmarkRun.objects.filter(job=job).count() == 2
    # and a third point the server refused, as the client reports it
    BenchmarkRun.objects.create(
        job=job, sequence=3, label="concurrency 16", status="failed", started_at=timezone.now(),
        duration_s=0.1, workload={}, summary={}, engine_args={},
        error="ClientConnectorError: Cannot connect to host 127.0.0.1:9 ssl:default "
        "[Connect call failed ('127.0.0.1', 9)]",
    )  # fmt: skip
    return job


def _whatif(assessment: Assessment) -> WhatIf:
    """A completed what-if holding the assessment's own answer (the page shows it the same)."""
    return WhatIf.objects.create(
        assessment=assessment, changes={"prices": {"H100-SXM": 2.0}},
        described=["price of H100-SXM $4 -> $2 per GPU-hour"], status=WhatIfStatus.COMPLETED,
        baseline=assessment.baseline, strategies=assessment.strategies, plan=assessment.plan,
        progress=1.0,
    )  # fmt: skip


def _rollout(nodes: list[Node]) -> int:
    rollout = rollout_propose(
        user=User.objects.get(username="bob"), nodes=[n.id for n in nodes],
        change={"title": "bigger batches", "engine_args": {"max_num_seqs": 512}},
        reason="the assessment's batching step",
    )  # fmt: skip
    now = timezone.now()
    LedgerEntry.objects.create(
        rollout=rollout, window_s=3600, before_start=now - timedelta(hours=2),
        before_end=now - timedelta(hours=1), after_start=now - timedelta(hours=1), after_end=now,
        status="measured", before={"gpus": 2, "usd_per_hour": 8.0},
        after={"gpus": 2, "usd_per_hour": 7.5}, flagged=True,
        flags=["below_half: realized 6.2% savings on usd_per_hour is under half the projected"],
        realized={"projected_fraction": 0.5, "realized_fraction": 0.0625},
    )  # fmt: skip
    return rollout.id


def _raw_names(page: Any, name: str) -> list[str]:
    """Stored field names (`dashboard.labels`) or Python booleans in the page's words (code
    and preformatted blocks, which show engine args and JSON as they are, aside)."""
    text = page.locator("main").evaluate(READABLE_TEXT)
    words = set(re.findall(r"\b\w+_\w+\b", text))
    found = [f"{name}: {word}" for word in sorted(words & set(LABELS))]
    found += [f"{name}: ...{m}" for m in re.findall(r".{0,30}\b(?:True|False)\b", text)]
    return found


def _overflows(page: Any, name: str) -> list[str]:
    """Each table (and its card) that scrolls sideways, and the page itself if it does."""
    found = []
    for m in page.locator("main table").evaluate_all(MEASURE):
        if m["scroll"] > m["client"] or m["box_scroll"] > m["box_client"]:
            found.append(
                f"{name}: table {m['testid']} is {m['scroll']} px in {m['client']} px, "
                f"its card {m['box_scroll']} px in {m['box_client']} px"
            )
    page_scroll, page_client = page.locator("html").evaluate(PAGE_WIDTHS)
    if page_scroll > page_client:
        found.append(f"{name}: the page is {page_scroll} px in {page_client} px")
    return found


def test_every_main_page_fits_1400_px_without_sideways_scrolling(
    browser: Any, live_server: Any, alice, bob, settings: Any, tmp_path: Any
) -> None:
    settings.VAR_DIR = tmp_path
    call_command("demo", stdout=StringIO())
    assessment = Assessment.objects.get(cluster__name="demo")
    deployment = ModelDeployment.objects.get(served_name="llama-3-70b-chat")
    node = Node.objects.filter(cluster__name="demo").order_by("hostname").first()
    assert node is not None
    gpu = Gpu.objects.filter(node=node).order_by("index").first()
    assert gpu is not None
    whatif = _whatif(assessment)
    rollout_id = _rollout(list(Node.objects.filter(cluster__name="demo").order_by("id")[:2]))
    job = _benchmark_sweep()
    ab = ab_job_stored(job.endpoint)
    runs = "&".join(f"run={r.pk}" for r in BenchmarkRun.objects.filter(job=job))
    pages = {
        "fleet": "/",
        "gpus": "/gpus/",
        "node": f"/nodes/{node.pk}/",
        "gpu": f"/gpus/{gpu.pk}/",
        "deployment": f"/deployments/{deployment.pk}/?window=24h",
        "deployment-config": f"/deployments/{deployment.pk}/config/",
        "traces": f"/traces/?deployment={deployment.pk}&window=24h",
        "trace-import": "/traces/import/",
        "assessments": "/assessments/",
        "assessment": f"/assessments/{assessment.pk}/",
        "whatif-form": f"/assessments/{assessment.pk}/whatif/",
        "whatif": f"/whatifs/{whatif.pk}/",
        "benchmarks": "/benchmarks/",
        "benchmark": f"/benchmarks/{job.pk}/",
        "benchmark-ab": f"/benchmarks/{ab.pk}/",
        "benchmark-compare": f"/benchmarks/compare/?{runs}",
        "reports": "/reports/",
        "rollouts": "/rollouts/",
        "rollout-new": f"/rollouts/new/?assessment={assessment.pk}&strategy=plan",
        "rollout": f"/rollouts/{rollout_id}/",
        "ledger": "/rollouts/ledger/",
    }
    overflows: list[str] = []
    raw_names: list[str] = []
    with new_page(browser, width=WIDTH_PX) as (page, problems):
        log_in(page, live_server.url, "alice")
        for name, path in pages.items():
            response = page.goto(f"{live_server.url}{path}")
            assert response is not None
            assert response.status == 200, f"{name}: {response.status}"
            page.wait_for_load_state("load")
            # charts draw after load and may resize their cards: wait for each to be drawn
            charts = page.locator(".chart[data-figure]").count()
            if charts:
                page.locator(".chart[data-drawn=true]").nth(charts - 1).wait_for(timeout=30_000)
            screenshot(page, f"width-{name}")
            tables = page.locator("main table").count()
            assert tables >= 1 or name in FORMS_ONLY, f"{name}: no table to measure"
            overflows += _overflows(page, name)
            raw_names += _raw_names(page, name)
        # The what-if form answers every bad field at once, each marked on the form.
        page.goto(f"{live_server.url}/assessments/{assessment.pk}/whatif/")
        page.fill("[data-testid=ttft-llama-3-70b-chat]", "-1")
        page.fill("input[name=d1-max_quality_loss_points]", "1000")
        page.fill("[data-testid=price-H100-SXM]", "x")
        page.click("[data-testid=whatif-run]")
        page.wait_for_load_state("load")
        assert page.locator("main .messages li.error").count() == 3
        assert page.locator("[data-testid=whatif-form] [aria-invalid=true]").count() == 3
        assert page.locator("[data-testid=whatif-form] .field-error").count() == 3
        overflows += _overflows(page, "whatif-form-errors")
        screenshot(page, "width-whatif-form-errors")
    assert overflows == []
    assert raw_names == []
    assert [p for p in problems if "status of 400" not in p] == []  # the form's answer
    assert not WhatIf.objects.exclude(pk=whatif.pk).exists()
