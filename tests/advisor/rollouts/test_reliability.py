"""Fault scenarios with real parts: two vLLM CPU nodes, their agents' controllers, a real
Celery worker on Redis, the server (live_server) in between.

Each node is a real vLLM server supervised by a real `LocalController`, driven by a real
`ControllerTask` that pulls its desired config from the live server over HTTP with the
node's agent token and reports back, ticking on its own thread like the agent's loop. The
rollout runs on this module's own Celery worker process (its own broker key prefix, see
`worker_app`), which one scenario SIGKILLs mid-rollout and starts again. A watcher samples
both nodes' /health every 0.2 s for the whole scenario.

Scenarios (each asserts how it ended):
1. bad args (vLLM refuses to start) on node-a -> rolled back, node-a serves its old config;
2. at the same time, node-b's vLLM SIGKILLed during its canary bake -> rolled back, node-b
   serves its old config again;
3. meanwhile a rollout to a node another rollout holds is refused, naming the holder;
4. the Celery worker SIGKILLed during the canary bake of a two-node rollout -> after a
   restart the rollout resumes and ends done; at no sample were both nodes down.
(Viewer/operator 403s on start are in test_api.py and tests/dashboard/test_rollouts.py.)

Run: CI=true DATABASE_URL=postgres://... TEST_REDIS_URL=redis://.../N \
     .venv/bin/pytest tests/advisor/rollouts/test_reliability.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from advisor.models import Rollout
from advisor.services.rollouts import RolloutError, rollout_propose, rollout_start
from probes.agent.controller import ControllerTask, HttpDesiredSource
from probes.agent.controller_local import LocalController
from probes.agent.vllm_process import is_healthy
from probes.services import node_register
from tests.support.celery_worker import app_uses_broker, components_check, worker_env, worker_spawn
from tests.support.components import missing
from tests.support.vllm_node import LOG_DIR, TINY_MODEL, VLLM_PYTHON, tiny_launch

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
PREFIX = f"gca-rollout-test-{uuid.uuid4().hex[:8]}:"
READY_TIMEOUT_S = 400.0  # a vLLM CPU start is 60-120 s here, slower beside another one
SCENARIO_TIMEOUT_S = 900.0


# -- the two nodes ---------------------------------------------------------------------------


@dataclass
class VllmNode:
    name: str
    controller: LocalController

    @property
    def url(self) -> str:
        return self.controller.base_url


@pytest.fixture(scope="module")
def vllm_pair() -> Iterator[list[VllmNode]]:
    """Two real vLLM servers on the base config, started together (about 1.5-2 minutes)."""
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    client = httpx.Client(timeout=30.0)
    nodes = [
        VllmNode(name, LocalController(tiny_launch(), log_dir=LOG_DIR / f"rollout-{name}",
                                       client=client, ready_timeout_s=READY_TIMEOUT_S))
        for name in ("node-a", "node-b")
    ]  # fmt: skip
    errors: list[BaseException] = []

    def start(node: VllmNode) -> None:
        try:
            node.controller.start(None)
        except Exception as exc:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise RuntimeError(f"a vLLM node did not start: {errors[0]}")
        yield nodes
    finally:
        for node in nodes:
            node.controller.close()
        client.close()


class HealthWatch:
    """Samples every node's /health; remembers every instant at which none served."""

    def __init__(self, nodes: list[VllmNode], interval_s: float = 0.2) -> None:
        self.nodes = nodes
        self.interval_s = interval_s
        self.samples = 0
        self.all_down: list[float] = []
        self.down_samples: dict[str, int] = {n.name: 0 for n in nodes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A generous timeout: a loaded 2-core box answers /health slowly, not never.
            up = [is_healthy(n.url, timeout_s=3.0) for n in self.nodes]
            self.samples += 1
            for node, ok in zip(self.nodes, up, strict=True):
                self.down_samples[node.name] += 0 if ok else 1
            if not any(up):
                self.all_down.append(time.time())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- the agents ------------------------------------------------------------------------------


@dataclass
class ManagedNode:
    vllm: VllmNode
    node_id: int
    task: ControllerTask
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self, interval_s: float = 0.5) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                self.task.tick(time.time())
                self.stop.wait(interval_s)

        self.thread = threading.Thread(target=loop, name=f"agent-{self.vllm.name}", daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.task.wait_idle(READY_TIMEOUT_S * 2)


@pytest.fixture
def managed(
    vllm_pair: list[VllmNode], live_server: Any, transactional_db: Any, tmp_path: Path
) -> Iterator[list[ManagedNode]]:
    """Both nodes registered on the live server, each with its agent's controller ticking."""
    client = httpx.Client(timeout=30.0)
    managed_nodes = []
    for vllm in vllm_pair:
        node, token = node_register(cluster_name="reliability", hostname=vllm.name)
        token_file = tmp_path / f"{vllm.name}.token"
        token_file.write_text(token)
        source = HttpDesiredSource(live_server.url, token_file, client)
        task = ControllerTask(vllm.controller, source, client=client, restart_delay_s=3.0)
        managed_nodes.append(ManagedNode(vllm, node.id, task))
    for item in managed_nodes:
        item.run()
    try:
        wait_for(lambda: all(_observed(m)["state"] == "serving" for m in managed_nodes), 60,
                 "both agents report serving")  # fmt: skip
        yield managed_nodes
    finally:
        for item in managed_nodes:
            item.halt()
        client.close()


def _observed(item: ManagedNode) -> dict[str, Any]:
    from probes.models import Node

    return Node.objects.get(id=item.node_id).observed_config or {"state": None}


# -- the worker ------------------------------------------------------------------------------


class Worker:
    """This module's own `celery worker -Q rollout`, which a scenario may kill."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = worker_spawn(
            app_module="tests.advisor.rollouts.worker_app",
            queues="rollout",
            log_name=f"rollout-worker-{self.starts}",
            env=worker_env(GCA_ROLLOUT_TEST_PREFIX=PREFIX),
            node_name=f"rollout-test-{self.starts}@%h",
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def worker(transactional_db: Any) -> Iterator[Worker]:
    components_check()
    running = Worker()
    with app_uses_broker(key_prefix=PREFIX):
        running.start()
        try:
            yield running
        finally:
            running.stop()


# -- helpers ---------------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")


def _rollout(rollout_id: int) -> Rollout:
    return Rollout.objects.get(id=rollout_id)


def _ended(rollout_id: int) -> bool:
    return _rollout(rollout_id).terminal


def _trail(rollout_id: int) -> str:
    events = _rollout(rollout_id).events.order_by("at", "id")
    return "\n".join(f"{e.at:%T} {e.actor_label}: {e.message}" for e in events)


def _propose(
    bob: User, nodes: list[ManagedNode], engine_args: dict[str, Any], **strategy: Any
) -> Rollout:
    return rollout_propose(
        user=bob,
        nodes=[m.node_id for m in nodes],
        change={"title": f"reliability {engine_args}", "engine_args": engine_args},
        # A shared 2-core box: latency limits a CPU node meets even beside another start;
        # these scenarios are about faults (the latency gates are tested in test_gates.py).
        gates={"ttft_p95_s": 10.0, "tpot_p95_s": 2.0},
        strategy={
            "apply_timeout_s": int(READY_TIMEOUT_S * 2),
            "probe_interval_s": 1.0,
            "canary_bake_s": 10,
            "bake_s": 5,
            **strategy,
        },
    )


# -- scenarios -------------------------------------------------------------------------------


def test_bad_args_and_a_killed_vllm_both_roll_back_and_the_nodes_serve_again(
    managed: list[ManagedNode], worker: Worker, alice: User, bob: User
) -> None:
    """Two faults at once, one per node (two single-node rollouts), to spend vLLM starts once."""
    node_a, node_b = managed
    # max_model_len above the model's 2048 positions: vLLM exits during start-up.
    bad = _propose(bob, [node_a], {"max_model_len": 4096})
    good = _propose(bob, [node_b], {"max_num_seqs": 8}, canary_bake_s=600)

    # While a rollout holds a node, a second one to it is refused, naming the holder.
    with pytest.raises(RolloutError) as refused:
        _propose(bob, [node_b, node_a], {"max_num_seqs": 4})
    assert refused.value.status == 409
    assert refused.value.message == (
        f"node node-a is already in rollout #{bad.id} (pending); "
        "wait until it is over or abort it first"
    )
    assert Rollout.objects.count() == 2

    rollout_start(user=alice, rollout_id=bad.id)
    rollout_start(user=alice, rollout_id=good.id)
    wait_for(lambda: _rollout(good.id).targets.get().status == "baking", SCENARIO_TIMEOUT_S,
             "node-b bakes its new config")  # fmt: skip
    pid = node_b.vllm.controller.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # vLLM dies mid-rollout
    wait_for(lambda: _ended(bad.id) and _ended(good.id), SCENARIO_TIMEOUT_S, "both ended")

    refused_start = _rollout(bad.id)
    assert refused_start.status == "rolled_back", _trail(bad.id)
    assert "max_model_len" in refused_start.outcome
    killed = _rollout(good.id)
    assert killed.status == "rolled_back", _trail(good.id)
    assert "vLLM exited during the bake" in killed.outcome
    for item in managed:
        url = item.vllm.url
        wait_for(lambda: is_healthy(url), 60, f"{item.vllm.name} serves")  # noqa: B023
        observed = _observed(item)
        assert observed["state"] == "serving"
        assert observed["config"] == {"engine_args": {}}  # the old (base) config
        assert item.vllm.controller.running_config().engine_args == {}
    assert _observed(node_a)["last_failure"]["restored"] is True  # the agent restored it
    assert node_b.vllm.controller.restarts == 1


def test_worker_killed_mid_rollout_resumes_and_never_both_nodes_down(
    managed: list[ManagedNode], worker: Worker, alice: User, bob: User
) -> None:
    node_a, node_b = managed
    with HealthWatch([node_a.vllm, node_b.vllm]) as watch:
        rollout = _propose(bob, managed, {"max_num_seqs": 16}, canary_bake_s=20, bake_s=5)
        rollout_start(user=alice, rollout_id=rollout.id)
        wait_for(lambda: _rollout(rollout.id).targets.get(position=0).status == "baking",
                 SCENARIO_TIMEOUT_S, "the canary bakes")  # fmt: skip
        worker.kill()
        killed_at = time.time()
        time.sleep(5)
        # Nothing moves while no worker runs.
        assert _rollout(rollout.id).targets.get(position=1).status == "pending"
        worker.start()
        wait_for(lambda: _ended(rollout.id), SCENARIO_TIMEOUT_S, "the rollout ended")
    done = _rollout(rollout.id)
    assert done.status == "done", _trail(rollout.id)
    for item in managed:
        assert _observed(item)["config"] == {"engine_args": {"max_num_seqs": 16}}
        assert item.vllm.controller.running_config().engine_args == {"max_num_seqs": 16}
        assert is_healthy(item.vllm.url)
    later = done.events.filter(at__gt=_aware(killed_at)).values_list("message", flat=True)
    assert any("all gates passed" in m for m in later)  # the restarted worker finished the bake
    assert watch.samples > 100
    assert watch.down_samples["node-a"] > 0  # each node restarted once...
    assert watch.down_samples["node-b"] > 0
    assert watch.all_down == []  # ...never both at once


def _aware(unix_s: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, tz=UTC)
