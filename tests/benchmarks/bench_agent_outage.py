"""The node agent across a server outage: nothing lost, nothing stored twice, a calm drain.

Rerun: `DJANGO_SETTINGS_MODULE=config.test_settings .venv/bin/python -m tests.benchmarks
bench_agent_outage` (part of `make bench`; needs PostgreSQL on 127.0.0.1:5432; about 2
minutes). Everything is a real process except the two stand-ins the agent reads from:

- The server: gunicorn serving the real ingest API on a throwaway PostgreSQL database
  (`gca_bench_agent_outage`, created, migrated and dropped), one node registered.
- The agent: `python -m probes.agent` (no NVML) sampling a stand-in vLLM `/metrics` every
  0.5 s whose samples are numbered (`tests/probes/agent/numbered_metrics.py`: sample n
  carries `requests_finished_total = n`) and recording, through its proxy, completions a
  load thread sends to a stand-in vLLM (`tests/probes/agent/fake_vllm.py`) with
  `max_tokens` 1, 2, 3, ... every 0.2 s (so request record i has `output_tokens = i`).
  Batches are sealed every 10 s (the default push interval).

Timeline: 6 s of traffic; the server is SIGKILLed (its whole process group) for
`OUTAGE_S` = 30 s; 12 s into the outage the agent is SIGKILLed too and started again on the
same spool (load and sampling paused for 1 s before the kill, so what was answered was
recorded: the open batch's records are then only in the agent's memory and its journal);
the server starts again; the agent drains its spool; 4 s more traffic; SIGTERM.

- `agent_outage_lost`: numbered samples answered + completions answered, minus those
  stored (each counted once). Target = 0. (With the agent's journal off, the open batch
  the SIGKILL hit is lost: 51 records, 16 samples and 35 completions, in one run here.)
- `agent_outage_duplicated`: rows the server received more than once (`IngestBatch
  .duplicate_rows`, rows a unique key absorbed) plus stored rows beyond one per number.
  Target = 0.
- `agent_drain_attempts`: connection attempts of an agent whose server is down, in its 3-s
  run plus a 10-s shutdown drain (`--drain-timeout 10`), from its `--stats-file`. With the
  1-s-to-60-s backoff that is 4 or 5; before the drain backed off it was 19,662 here
  (the issue counted 38,980 in a 10-s drain on a faster machine). Target <= 8.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from tests.benchmarks import Figure
from tests.benchmarks.support import (
    BIN,
    ROOT,
    register_node,
    server_env,
    throwaway_database,
    wait_ready,
)
from tests.probes.agent.fake_vllm import MODEL, fake_vllm
from tests.probes.agent.numbered_metrics import NumberedScrapes
from tests.probes.agent.stub_http import serving
from tests.support.components import free_port

BENCH_DB = "gca_bench_agent_outage"
HOSTNAME = "outage-node"
OUTAGE_S = 30.0
AGENT_KILL_AT_S = 12.0  # into the outage
DRAIN_TIMEOUT_S = 10.0


def run() -> Iterator[Figure]:
    with throwaway_database(BENCH_DB) as database_url:
        token = register_node(database_url, HOSTNAME)
        server = Server(free_port(), database_url)
        server.start()
        try:
            lost, duplicated = _outage(server, token, database_url)
        finally:
            server.kill()
    yield Figure("agent_outage_lost", lost, "records", "= 0")
    yield Figure("agent_outage_duplicated", duplicated, "records", "= 0")
    yield _drain_figure()


# -- the outage -------------------------------------------------------------------------------


class Load:
    """Completions through the agent's proxy, `max_tokens` 1, 2, 3, ...; `paused()` holds
    the next one back and waits for the one under way."""

    def __init__(self, proxy_url: str) -> None:
        self.proxy_url = proxy_url
        self.answered: list[int] = []
        self.failures: list[str] = []
        self._turn = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._turn:
            yield

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                with self._turn:
                    n += 1
                    body = {"model": MODEL, "prompt": f"request {n}", "max_tokens": n}
                    try:
                        response = client.post(self.proxy_url + "/v1/completions", json=body)
                        response.raise_for_status()
                        self.answered.append(n)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{n}: {exc!r}")
                self._stop.wait(0.2)


def _outage(server: Server, token: str, database_url: str) -> tuple[int, int]:
    scrapes = NumberedScrapes(MODEL)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving({("GET", "/metrics"): scrapes}) as metrics_url,
        fake_vllm() as upstream_url,
    ):
        token_file = Path(tmp) / "token"
        token_file.write_text(token)
        proxy_port = free_port()
        spool = Path(tmp) / "spool"
        args = ["--server", server.url, "--token-file", str(token_file), "--hostname", HOSTNAME,
                "--no-nvml", "--vllm", metrics_url, "--proxy-listen", f"127.0.0.1:{proxy_port}",
                "--proxy-upstream", upstream_url, "--spool-dir", str(spool),
                "--sample-interval", "0.5", "--push-interval", "10", "--drain-timeout", "30",
                "--stats-file", str(Path(tmp) / "stats.json"),
                "--log-level", "WARNING"]  # fmt: skip
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        load = Load(proxy_url)
        agent = _agent(args, proxy_url)
        try:
            load.start()
            time.sleep(6)
            server.kill()
            outage_started = time.monotonic()
            time.sleep(AGENT_KILL_AT_S)
            with load.paused():
                scrapes.serving = False
                time.sleep(1.0)  # the agent's last sample is taken and journaled
                spooled = len(list(spool.glob("*.json.gz")))
                agent.kill()
                agent.wait(timeout=10)
                agent = _agent(args, proxy_url)
                scrapes.serving = True
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            server.start()
            back = time.monotonic()
            while list(spool.glob("*.json.gz")) and time.monotonic() - back < 90:
                time.sleep(0.2)
            drain_s = time.monotonic() - back
            time.sleep(4)
            load.stop()
            time.sleep(1.0)  # the last sample round after the last completion
        finally:
            load.stop()
            agent.send_signal(signal.SIGTERM)
            returncode = agent.wait(timeout=60)
        stats = json.loads((Path(tmp) / "stats.json").read_text())
    if returncode != 0 or load.failures:
        raise RuntimeError(f"agent exited {returncode}; load failures {load.failures[:3]}")
    samples, requests, received_twice, batches = _stored(database_url)
    lost = len(set(range(1, scrapes.answered + 1)) - set(samples))
    lost += len(set(load.answered) - set(requests))
    duplicated = received_twice + len(samples) - len(set(samples))
    duplicated += len(requests) - len(set(requests))
    push = stats["push"]
    print(f"# outage {OUTAGE_S:.0f} s, agent SIGKILLed {AGENT_KILL_AT_S:.0f} s into it with "
          f"{spooled} batches spooled: samples answered {scrapes.answered}, stored "
          f"{len(samples)}; completions answered {len(load.answered)}, stored {len(requests)}; "
          f"{batches} batches stored; spool drained {drain_s:.1f} s after the server came "
          f"back; the restarted agent replayed {stats['agent']['records_replayed']} journaled "
          f"records, made {push['attempts']} attempts ({push['failures']} failed); load "
          f"average {os.getloadavg()[0]:.1f}")  # fmt: skip
    return lost, duplicated


def _stored(database_url: str) -> tuple[list[int], list[int], int, int]:
    """(sample numbers, request numbers, rows received twice, batches) in the database."""
    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        samples = [int(n) for (n,) in conn.execute(
            "SELECT requests_finished_total FROM probes_enginesample")]  # fmt: skip
        requests = [n for (n,) in conn.execute("SELECT output_tokens FROM probes_requestrecord")]
        row = conn.execute(
            "SELECT coalesce(sum(duplicate_rows), 0), count(*) FROM probes_ingestbatch"
        ).fetchone()
    assert row is not None
    return samples, requests, int(row[0]), int(row[1])


def _agent(args: list[str], proxy_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([str(BIN / "python"), "-m", "probes.agent", *args], cwd=ROOT)
    wait_ready(lambda: httpx.get(proxy_url + "/metrics", timeout=1).status_code == 200, process)
    return process


# -- the drain --------------------------------------------------------------------------------


def _drain_figure() -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text("no-server-to-check-it")
        stats_file = Path(tmp) / "stats.json"
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "probes.agent", "--server",
             f"http://127.0.0.1:{free_port()}", "--token-file", str(token_file), "--hostname",
             HOSTNAME, "--no-nvml", "--spool-dir", str(Path(tmp) / "spool"),
             "--drain-timeout", str(DRAIN_TIMEOUT_S), "--stats-file", str(stats_file),
             "--log-level", "ERROR"],
            cwd=ROOT,
        )  # fmt: skip
        time.sleep(3)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DRAIN_TIMEOUT_S + 30)
        drain_s = time.monotonic() - stopped
        push = json.loads(stats_file.read_text())["push"]
    print(f"# drain: server down, SIGTERM after 3 s, exited {drain_s:.1f} s later; "
          f"{push['attempts']} attempts, last error {push['last_error']!r}")  # fmt: skip
    return Figure("agent_drain_attempts", push["attempts"], "attempts", "<= 8")


# -- processes --------------------------------------------------------------------------------


class Server:
    """gunicorn on a fixed port, killed and started again there to stage an outage."""

    def __init__(self, port: int, database_url: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.database_url = database_url
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--log-level", "warning"],
            cwd=ROOT, env=server_env(self.database_url), start_new_session=True,
        )  # fmt: skip
        wait_ready(lambda: httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503),
                   self._process)  # fmt: skip

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
