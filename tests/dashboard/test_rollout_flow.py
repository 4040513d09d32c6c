"""The rollout flow in Chromium on a real node: propose a plan's change, start it, watch it land.

The node is the one `make demo-node` runs (`dashboard.demo_node`): a real agent process
(`python -m probes.agent --controller-config`) supervising a real vLLM CPU server on the tiny
model (`make vllm-node`), pushing to the live server; a real Celery worker advances the
rollout. The assessment is a real engine answer (`tests.dashboard.assessed`) whose plan for
`llama` is given an engine-args change a CPU server can take (`max_num_seqs` 8): the
per-replica part is applied, the plan's replica count becomes a manual step.

Run: CI=true DATABASE_URL=postgres://... TEST_REDIS_URL=redis://.../N \
     .venv/bin/pytest tests/dashboard/test_rollout_flow.py
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from advisor.models import LedgerEntry, Rollout
from dashboard.demo_node import DemoNode, agent_argv, demo_node_prepare
from probes.models import ModelDeployment, Node
from tests.dashboard.assessed import assessment_completed
from tests.support.browser import browser_session, log_in, new_page, screenshot
from tests.support.components import free_port, missing
from tests.support.vllm_node import LOG_DIR, TINY_MODEL, VLLM_PYTHON

pytestmark = [pytest.mark.integration]

CLUSTER = "flow"
HOST = "cpu-node-1"
READY_S = 600.0  # a vLLM CPU start is 1-2 minutes here, slower beside other work
FLOW_S = 900.0  # restart with the change (1-2 minutes), a 20 s bake, the steps between


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")


def _serving(node_id: int) -> bool:
    observed = Node.objects.get(id=node_id).observed_config or {}
    return observed.get("state") == "serving" and bool(observed.get("healthy"))


@pytest.fixture
def managed_node(live_server: Any, celery_worker: Any, tmp_path: Path) -> Iterator[DemoNode]:
    """The demo node's agent (and its vLLM) against the live server, serving its base args."""
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    port = free_port()
    demo = demo_node_prepare(
        cluster=CLUSTER, directory=tmp_path / "node", vllm_python=VLLM_PYTHON,
        model=TINY_MODEL, port=port, hostname=HOST,
    )  # fmt: skip
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / f"flow-agent-{port}.log").open("wb") as log:
        agent = subprocess.Popen(
            agent_argv(demo, server=live_server.url), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait(lambda: _serving(demo.node.id), READY_S, "the agent reports vLLM serving")
            yield demo
        finally:
            agent.terminate()  # the agent stops its vLLM child
            try:
                agent.wait(timeout=120)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(timeout=10)


def test_an_operator_proposes_the_plans_change_and_an_admin_watches_it_land(
    managed_node: DemoNode, live_server: Any, alice: User, bob: User
) -> None:
    node = managed_node.node
    llama = ModelDeployment.objects.create(cluster=node.cluster, served_name="llama",
                                           model_id="org/Llama-3-8B")  # fmt: skip
    assessment = assessment_completed(cluster=node.cluster, end=timezone.now())
    plan = copy.deepcopy(assessment.plan)  # the engine answer is cached: do not change it
    entry = next(d for d in plan["deployments"] if d["deployment"] == "llama")
    entry["config_change"]["engine_args"] = {"--max-num-seqs": 8}
    assessment.plan = plan
    assessment.save(update_fields=["plan"])
    url = live_server.url
    with browser_session() as browser:
        with new_page(browser) as (page, problems):
            log_in(page, url, "bob")
            page.goto(f"{url}/assessments/{assessment.id}/")
            page.click('[data-testid="propose-deployment"][data-deployment="llama"]')
            page.wait_for_url(re.compile(r"/rollouts/new/\?"))
            assert page.input_value("select[name=deployment]") == str(llama.id)
            page.select_option("select[name=nodes]", label=f"{CLUSTER}/{HOST}")
            for name, value in (
                ("canary_bake_s", "20"),
                ("apply_timeout_s", "900"),
                ("probe_interval_s", "1"),
                ("ledger_window_s", "60"),
                ("gate_ttft_p95_s", "10"),
                ("gate_tpot_p95_s", "2"),
            ):
                page.fill(f"input[name={name}]", value)  # a CPU node's bake and latency
            page.fill("textarea[name=reason]", "the plan's batch size on the CPU node")
            page.click('[data-testid="propose-form"] button[type=submit]')
            page.wait_for_url(re.compile(r"/rollouts/\d+/$"))
            steps = page.inner_text('[data-testid="manual-steps"]')
            replicas = entry["config_change"]["replicas"]  # the plan's (redundancy rule kept)
            assert f"Run {replicas} replica(s) of llama" in steps
            assert problems == []
        rollout = Rollout.objects.get()
        assert rollout.change.node_config() == {"engine_args": {"max_num_seqs": 8}}
        with new_page(browser) as (page, problems):
            log_in(page, url, "alice")
            page.goto(f"{url}/rollouts/{rollout.id}/")
            page.click('[data-testid="start"]')
            # The page polls, and reloads when the rollout ends: the ledger appears then.
            page.wait_for_selector('[data-testid="ledger"]', timeout=FLOW_S * 1000)
            screenshot(page, "rollout-flow-done")
            assert page.inner_text('[data-testid="rollout-status"]') == "Done"
            gates = page.locator('[data-testid="targets"] td[data-field="gates"] span')
            assert gates.count() >= 5
            assert gates.evaluate_all("spans => spans.every(s => s.className === 'ok')")
            trail = page.inner_text('[data-testid="events"]')
            assert f"{HOST}: all gates passed after the bake" in trail
            ledger = page.inner_text('[data-testid="ledger"]')
            assert "Waiting for the measurement window" in ledger
            page.goto(f"{url}/rollouts/ledger/")
            assert f"#{rollout.id}" in page.inner_text("main")
            assert [p for p in problems if "page error" in p] == []
    done = Rollout.objects.get(id=rollout.id)
    assert (done.status, done.outcome) == ("done", "applied to every node")
    assert LedgerEntry.objects.get(rollout=done).window_s == 60
    observed = Node.objects.get(id=node.id).observed_config
    assert observed["config"] == {"engine_args": {"max_num_seqs": 8}}
    assert observed["state"] == "serving"
