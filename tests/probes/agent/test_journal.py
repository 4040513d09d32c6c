"""The journal: what the agent collected is on disk at once, so a SIGKILL loses none of it."""

from __future__ import annotations

import gzip
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from probes.agent.config import AgentConfig
from probes.agent.journal import Journal
from probes.agent.runner import Agent
from probes.agent.samplers import Observations
from probes.agent.samplers.host import HostSampler
from probes.agent.spool import Spool
from tests.probes.agent.numbered_metrics import NumberedScrapes
from tests.probes.agent.stub_http import serving

ROOT = Path(__file__).resolve().parents[3]
GPU = {"uuid": "GPU-0", "index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80}
REQUEST = {"served_name": "m", "arrival_ts": 99.0, "prompt_tokens": 3, "output_tokens": 4}


def _agent(spool_dir: Path) -> Agent:
    config = AgentConfig(hostname="node-1", spool_dir=spool_dir)
    spool = Spool(spool_dir, 2**20)
    return Agent(config, [], HostSampler("node-1"), spool, None, Journal(spool_dir / "journal"))


def _sample(ts: float) -> Observations:
    return Observations(gpus=[GPU], gpu_samples=[{"gpu_uuid": "GPU-0", "ts": ts, "util_pct": 5}])


def _payloads(spool: Spool) -> list[dict[str, Any]]:
    payloads = []
    while (entry := spool.oldest()) is not None:
        payloads.append(json.loads(gzip.decompress(entry.path.read_bytes())))
        spool.remove(entry)
    return payloads


def test_it_seals_a_killed_runs_open_batch_at_the_next_start(tmp_path: Path) -> None:
    killed = _agent(tmp_path)
    killed.builder.add(_sample(100.0))
    killed.seal(100.5)  # this batch reached the spool: its journal is gone
    killed.builder.add(_sample(101.0))
    killed.builder.add(_sample(102.0))
    killed.record_request(REQUEST)
    # ... and the process dies here: nothing but the journal knows of 101, 102 and the request.
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) == 1

    restarted = _agent(tmp_path)
    restarted.replay_journal()
    first, second = _payloads(restarted.spool)
    assert first["gpu_samples"]["ts"] == [100.0]
    assert second["gpu_samples"] == {"gpu_uuid": ["GPU-0", "GPU-0"], "ts": [101.0, 102.0],
                                     "util_pct": [5, 5]}  # fmt: skip
    assert second["requests"]["output_tokens"] == [4]
    assert second["gpus"] == [GPU]  # the inventory came along: the server can resolve GPU-0
    assert restarted.stats.records_replayed == 3
    assert not list((tmp_path / "journal").glob("*.jsonl"))


def test_it_does_not_seal_again_a_batch_the_spool_already_holds(tmp_path: Path) -> None:
    """Killed between sealing the batch into the spool and deleting its journal."""
    killed = _agent(tmp_path)
    killed.builder.add(_sample(100.0))
    journal = killed.journal
    assert journal is not None
    journal.discard = lambda batch_id: None  # type: ignore[method-assign]
    killed.seal(100.5)
    restarted = _agent(tmp_path)
    restarted.replay_journal()
    assert [p["gpu_samples"]["ts"] for p in _payloads(restarted.spool)] == [[100.0]]
    assert restarted.stats.records_replayed == 0
    assert not list((tmp_path / "journal").glob("*.jsonl"))


def test_it_skips_a_torn_last_line(tmp_path: Path) -> None:
    killed = _agent(tmp_path)
    killed.builder.add(_sample(101.0))
    (path,) = (tmp_path / "journal").glob("*.jsonl")
    with path.open("ab") as handle:
        handle.write(b'{"o": {"gpu_samp')  # a power cut in the middle of a write
    restarted = _agent(tmp_path)
    restarted.replay_journal()
    (payload,) = _payloads(restarted.spool)
    assert payload["gpu_samples"]["ts"] == [101.0]
    assert payload["batch_id"] == path.name.removesuffix(".jsonl")


class Ingest:
    """The ingest endpoint, storing each batch id once (200 "already stored" after that)."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}

    def __call__(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers["Content-Length"]))
        payload = json.loads(gzip.decompress(body))
        status = 200 if payload["batch_id"] in self.batches else 201
        self.batches.setdefault(payload["batch_id"], payload)
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def scrapes_stored(self) -> list[int]:
        return sorted(
            int(n)
            for payload in self.batches.values()
            if payload["engine_samples"]
            for n in payload["engine_samples"]["requests_finished_total"]
        )


@contextmanager
def _agent_process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "probes.agent", *args], cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_sigkilled_agent_loses_no_sample(tmp_path: Path) -> None:
    """The real agent samples at 5 Hz and would seal a batch only each minute; it is killed
    (SIGKILL) after 10 scrapes, started again and stopped cleanly: every scrape answered
    is stored, once."""
    scrapes, ingest = NumberedScrapes(), Ingest()
    token = tmp_path / "token"
    token.write_text("secret")
    with (
        serving({("GET", "/metrics"): scrapes}) as vllm_url,
        serving({("POST", "/api/v1/ingest/"): ingest}) as server_url,
    ):
        args = ["--server", server_url, "--token-file", str(token), "--hostname", "node-1",
                "--no-nvml", "--vllm", vllm_url, "--spool-dir", str(tmp_path / "spool"),
                "--sample-interval", "0.2", "--push-interval", "60", "--drain-timeout", "10",
                "--stats-file", str(tmp_path / "stats.json")]  # fmt: skip
        with _agent_process(args, tmp_path / "agent.log") as first:
            _until(lambda: scrapes.answered >= 10)
            scrapes.serving = False
            time.sleep(0.6)  # the 10th sample is journaled (the agent scrapes each 0.2 s)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert ingest.scrapes_stored() == [1]  # only the batch sealed at start was sent
        scrapes.serving = True
        with _agent_process(args, tmp_path / "agent.log") as second:
            _until(lambda: scrapes.answered >= 15)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0, (tmp_path / "agent.log").read_text()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["agent"]["records_replayed"] == 9  # scrapes 2 to 10
    assert ingest.scrapes_stored() == list(range(1, scrapes.answered + 1))
    assert stats["spool"]["pending_batches"] == 0


def test_records_the_journal_cannot_write_are_still_collected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "journal").write_text("not a directory")  # as a full disk or bad mode would
    agent = _agent(tmp_path)
    with caplog.at_level(logging.ERROR):
        agent.builder.add(_sample(1.0))
        agent.builder.add(_sample(2.0))
        agent.seal(2.5)
    (payload,) = _payloads(agent.spool)
    assert payload["gpu_samples"]["ts"] == [1.0, 2.0]
    assert [r.getMessage()[:27] for r in caplog.records] == ["cannot write the journal in"]
