"""The agent against a real vLLM CPU node and a real server that goes down mid-run.

Real parts: the session's vLLM CPU server, the agent as a subprocess (`python -m
probes.agent`) scraping its /metrics and proxying real streamed completions, gunicorn
serving the ingest API on the PostgreSQL test database. The server is killed for a while
and started again: every sample and request must end up stored exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.agent.vllm_process import VllmProcess
from probes.models import EngineSample, IngestBatch, RequestRecord
from probes.services import node_register
from tests.probes.servers import LOG_DIR, AgentProcess, DjangoServer
from tests.support.components import free_port
from tests.support.vllm_node import SERVED_NAME

pytestmark = [pytest.mark.integration]
OUTAGE_S = 12.0


class Load:
    """Streams completions through the proxy from a thread and remembers what was sent."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.sent: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                max_tokens = 8 + (i % 5) * 4
                body = {
                    "model": SERVED_NAME, "prompt": f"request {i}: the quick brown fox",
                    "max_tokens": max_tokens, "ignore_eos": True, "stream": i % 3 != 0,
                }  # fmt: skip
                try:
                    response = client.post(self.base_url + "/v1/completions", json=body)
                    response.raise_for_status()
                    self.sent.append({"max_tokens": max_tokens, "stream": body["stream"]})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                i += 1
                self._stop.wait(0.3)


def test_nothing_is_lost_or_duplicated_when_the_server_goes_down(
    transactional_db: Any, vllm_node: VllmProcess, tmp_path: Path
) -> None:
    node, token = node_register(cluster_name="e2e", hostname="vllm-node")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    server = DjangoServer(free_port())
    server.start()
    proxy_port = free_port()
    stats_file = tmp_path / "stats.json"
    agent = AgentProcess(
        ["--server", server.url, "--token-file", str(token_file), "--hostname", "vllm-node",
         "--vllm", vllm_node.launch.base_url, "--proxy-listen", f"127.0.0.1:{proxy_port}",
         "--proxy-upstream", vllm_node.launch.base_url, "--spool-dir", str(tmp_path / "spool"),
         "--sample-interval", "1", "--push-interval", "2", "--histogram-interval", "4",
         "--drain-timeout", "30", "--stats-file", str(stats_file)],
        LOG_DIR / f"probes-agent-{proxy_port}.log",
    )  # fmt: skip
    load = Load(f"http://127.0.0.1:{proxy_port}")
    try:
        agent.start()
        _wait_for_proxy(proxy_port, agent)
        load.start()
        time.sleep(6)
        server.kill()
        outage_started = time.time()
        time.sleep(OUTAGE_S)
        spooled = len(list((tmp_path / "spool").glob("*.json.gz")))
        server.start()
        outage_ended = time.time()
        time.sleep(6)
        load.stop()
        time.sleep(1.5)  # the last responses are recorded and sampled
        assert agent.stop() == 0, agent.log()
    finally:
        load.stop()
        agent.stop()
        server.kill()

    stats = json.loads(stats_file.read_text())
    produced_samples = stats["agent"]["engine_samples"]
    push = stats["push"]
    deployment_samples = EngineSample.objects.filter(
        deployment__served_name=SERVED_NAME, deployment__cluster=node.cluster
    )
    stored_samples = deployment_samples.count()
    distinct_samples = deployment_samples.values("instance", "ts").distinct().count()
    requests = RequestRecord.objects.filter(deployment__cluster=node.cluster)
    print(
        f"\nOUTAGE {OUTAGE_S:.0f} s: engine samples sent {produced_samples}, stored "
        f"{stored_samples}, duplicates {stored_samples - distinct_samples}; requests sent "
        f"{len(load.sent)}, recorded {stats['agent']['requests']}, stored {requests.count()}; "
        f"batches sealed {stats['agent']['batches_sealed']}, stored {push['stored']}, answered "
        f"'already stored' {push['duplicates']}, spooled during the outage {spooled}, "
        f"failed attempts {push['failures']}"
    )
    assert load.failures == []
    assert spooled >= 3  # the outage was real: batches waited on disk
    assert push["failures"] >= 1
    assert stats["spool"] == {"pending_batches": 0, "pending_bytes": 0, "dropped_batches": 0,
                              "dropped_records": 0}  # fmt: skip
    assert push["stored"] + push["duplicates"] == stats["agent"]["batches_sealed"]
    assert IngestBatch.objects.filter(node=node).count() == stats["agent"]["batches_sealed"]
    # Every sample the agent took is stored exactly once...
    assert stored_samples == produced_samples
    assert distinct_samples == stored_samples
    # ...and they cover the whole run, the outage included, without a gap.
    stamps = [s.timestamp() for s in deployment_samples.order_by("ts").values_list("ts", flat=True)]
    assert stamps[0] < outage_started - 3
    assert stamps[-1] > outage_ended + 3
    assert max(b - a for a, b in pairwise(stamps)) < 2.5
    # Exactly the requests sent, with vLLM's own token counts (ignore_eos: max_tokens each).
    assert requests.count() == len(load.sent) == stats["agent"]["requests"]
    assert sorted(requests.values_list("output_tokens", flat=True)) == sorted(
        s["max_tokens"] for s in load.sent
    )
    assert not requests.exclude(status="ok").exists()
    assert all(r.prompt_tokens > 0 for r in requests)
    streamed = requests.filter(ttft_s__isnull=False)
    assert streamed.count() == sum(1 for s in load.sent if s["stream"])
    assert all(0 < (r.ttft_s or 0) <= (r.e2e_s or 0) for r in streamed)
    # Each with its prompt's block hashes (on by default) in the engine's 128-token blocks.
    assert stats["prefix_hashes"]["hashed"] == len(load.sent)
    hashed = [(r.prefix_block_tokens, len(r.prefix_block_hashes or ()), r.prompt_tokens // 128)
              for r in requests]  # fmt: skip
    assert all(block == 128 and count == full for block, count, full in hashed)
    # The agent's scrapes saw vLLM count the same requests.
    totals = [
        t
        for t in deployment_samples.order_by("ts").values_list("requests_finished_total", flat=True)
        if t is not None
    ]
    assert totals[-1] - totals[0] >= len(load.sent) - 2


def _wait_for_proxy(port: int, agent: AgentProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not agent.running():
            raise RuntimeError(f"agent exited: {agent.log()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"agent proxy not up: {agent.log()}")
