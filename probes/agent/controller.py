"""The node controller task: pull the desired config, apply it, supervise, report what runs.

One interface (`NodeController`) for every way a node serves vLLM: `controller_local`
supervises a vLLM process on this machine, `controller_kubernetes` patches a Deployment.
`ControllerTask.tick` is the agent's periodic task (`Agent.add_task`); it never blocks the
agent's loop: applying a config (minutes) and restarting a dead process run on one worker
thread, and `tick` only decides, probes and reports.

What `tick` does, in order:
1. GET the desired config. A generation newer than the applied one, not failed before, is
   applied: adopted without a restart when the same config already serves healthy, else
   handed to the controller, whose `apply` restores the previous config on any failure and
   raises `ApplyError` saying why. A failed generation is remembered and never retried.
2. When the served process exited on its own, it is restarted after `restart_delay_s` (the
   server, which sees the exit in the next report, gets that long to roll back instead).
3. While a probe window is open (after applying a generation), send a small completion
   every `probe_interval_s`, so the bake has latency and error data without user traffic.
4. POST a report (`desired.Observed`) with the live counters the server's gates read.

The applied generation, its config and the failed generations are kept in `state_path`, so
an agent that restarts brings back what it last served.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from probes.agent.desired import Desired, Failure, NodeConfig, Observed, ProtocolError
from probes.agent.pusher import TokenError, read_token
from probes.agent.vllm_metrics import VllmMetricsError, parse_snapshot

log = logging.getLogger(__name__)
CONFIG_PATH = "/api/v1/agent/config/"
SMOKE_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 10.0
METRICS_TIMEOUT_S = 3.0
UNHEALTHY_AFTER_CHECKS = 3  # consecutive failed /health checks before reporting "unhealthy"
# The vLLM series gates read (canonical names, see vllm_metrics); the rest are not parsed.
GATE_SERIES = frozenset({
    "time_to_first_token_seconds", "request_time_per_output_token_seconds",
    "inter_token_latency_seconds", "request_success", "generation_tokens",
})  # fmt: skip


class ApplyError(RuntimeError):
    """A config could not be applied; `restored` says whether the previous one serves again."""

    def __init__(self, reason: str, *, restored: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.restored = restored


@dataclass
class Health:
    """A cheap look at the served vLLM (no waiting)."""

    running: bool
    healthy: bool
    detail: str = ""


class NodeController(Protocol):
    """How a node serves vLLM; implemented by LocalController and KubernetesController."""

    kind: str
    restarts: int  # unexpected exits of the served process since the agent started

    @property
    def base_url(self) -> str | None:
        """The served vLLM's URL for probes and /metrics (None: not reachable from here)."""

    @property
    def served_name(self) -> str: ...

    @property
    def last_exit(self) -> Mapping[str, Any] | None: ...

    def start(self, config: NodeConfig | None) -> None:
        """Bring up `config` (None: the node's base config) when nothing serves yet."""

    def apply(self, config: NodeConfig) -> None:
        """Switch to `config`; on failure restore the previous one and raise ApplyError."""

    def running_config(self) -> NodeConfig | None:
        """The config that serves now (None: the base config)."""

    def check(self) -> Health:
        """Whether it runs and answers /health; records an unexpected exit once."""

    def restart(self) -> None:
        """Bring the current config back after it exited on its own (raises ApplyError)."""

    def close(self) -> None:
        """Stop what this controller started (the agent is exiting)."""


class DesiredSource(Protocol):
    def fetch(self) -> Desired: ...

    def report(self, observed: Observed) -> None: ...


class HttpDesiredSource:
    """The server's desired-config endpoint, authenticated with the node's agent token."""

    def __init__(self, server: str, token_file: Path, client: httpx.Client) -> None:
        self.url = server.rstrip("/") + CONFIG_PATH
        self.token_file = token_file
        self._client = client
        self._lock = threading.Lock()  # the worker thread reports too

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {read_token(self.token_file)}"}

    def fetch(self) -> Desired:
        with self._lock:
            response = self._client.get(self.url, headers=self._headers())
        response.raise_for_status()
        return Desired.from_json(response.json())

    def report(self, observed: Observed) -> None:
        with self._lock:
            response = self._client.post(self.url, json=observed.to_json(), headers=self._headers())
        if response.status_code >= 400:
            raise RuntimeError(f"report refused: {response.status_code} {response.text[:300]}")


def smoke_request(
    client: httpx.Client, base_url: str, served_name: str, timeout_s: float = SMOKE_TIMEOUT_S
) -> None:
    """One tiny completion; raises RuntimeError saying what was wrong."""
    try:
        response = client.post(
            f"{base_url}/v1/completions",
            json={"model": served_name, "prompt": "Hello", "max_tokens": 4, "temperature": 0},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"smoke request failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise RuntimeError(f"smoke request answered {response.status_code}: {response.text[:300]}")
    try:
        choices = response.json().get("choices")
    except ValueError as exc:
        raise RuntimeError("smoke request answered something that is not JSON") from exc
    if not choices:
        raise RuntimeError("smoke request answered no choices")


def gate_metrics(text: str, served_name: str, now_s: float) -> dict[str, Any]:
    """The cumulative counters and histograms the server's gates read, from /metrics text."""
    snapshot = parse_snapshot(text, model_name=served_name, only=GATE_SERIES)
    outcomes = snapshot.counter_breakdowns.get("request_success", {})
    tpot = snapshot.histograms.get("request_time_per_output_token_seconds") or (
        snapshot.histograms.get("inter_token_latency_seconds")
    )
    ttft = snapshot.histograms.get("time_to_first_token_seconds")
    http = _http_counts(text)
    return {
        "at": now_s,
        "requests_total": snapshot.counters.get("request_success", 0.0),
        "requests_error": outcomes.get("error", 0.0),
        "http_total": http[0],
        "http_5xx": http[1],
        "generation_tokens": snapshot.counters.get("generation_tokens", 0.0),
        "ttft": ttft.to_json() if ttft else None,
        "tpot": tpot.to_json() if tpot else None,
    }


def _http_counts(text: str) -> tuple[float, float]:
    """(all, 5xx) responses of the OpenAI routes, from `http_requests_total{handler,status}`."""
    total = errors = 0.0
    for line in text.splitlines():
        if not line.startswith("http_requests_total{") or 'handler="/v1/' not in line:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        total += value
        if 'status="5xx"' in line:
            errors += value
    return total, errors


@dataclass
class ProbeCounts:
    ok: int = 0
    failed: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "last_error": self.last_error}


@dataclass
class _State:
    applied_generation: int = 0
    config: NodeConfig | None = None
    failed: set[int] = field(default_factory=set)
    last_failure: Failure | None = None


class ControllerTask:
    """The agent's periodic controller task (see the module docstring)."""

    def __init__(
        self,
        controller: NodeController,
        source: DesiredSource,
        *,
        client: httpx.Client,
        state_path: Path | None = None,
        restart_delay_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.controller = controller
        self.source = source
        self.client = client
        self.state_path = state_path
        self.restart_delay_s = restart_delay_s
        self.clock = clock
        self.agent_started_at = clock()
        self.seq = 0
        self.state = "starting"
        self.working_on: int | None = None
        self.probes = ProbeCounts()
        self.detail = ""
        self._saved = self._load()
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._down_since: float | None = None
        self._failed_checks = 0
        self._probe_until = 0.0
        self._probe_interval_s = 0.0
        self._next_probe = 0.0
        self._last_desired: Desired | None = None

    # -- state file ------------------------------------------------------------------------

    def _load(self) -> _State:
        if self.state_path is None or not self.state_path.exists():
            return _State()
        try:
            data = json.loads(self.state_path.read_text())
            config = NodeConfig.from_json(data["config"]) if data.get("config") else None
            failure = data.get("last_failure")
            return _State(
                applied_generation=int(data.get("applied_generation", 0)),
                config=config,
                failed={int(g) for g in data.get("failed", [])},
                last_failure=Failure.from_json(failure) if failure else None,
            )
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
            log.warning("controller state %s unreadable (%s): starting from the base config",
                        self.state_path, exc)  # fmt: skip
            return _State()

    def _save(self) -> None:
        if self.state_path is None:
            return
        saved = self._saved
        data = {
            "applied_generation": saved.applied_generation,
            "config": saved.config.to_json() if saved.config else None,
            # Only recent failures matter (generations only grow); keep the file small.
            "failed": sorted(saved.failed)[-50:],
            "last_failure": saved.last_failure.to_json() if saved.last_failure else None,
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(".tmp")
        partial.write_text(json.dumps(data, indent=1))
        partial.replace(self.state_path)  # atomic: a crash never leaves half a file

    @property
    def applied_generation(self) -> int:
        return self._saved.applied_generation

    @property
    def last_failure(self) -> Failure | None:
        return self._saved.last_failure

    # -- worker thread ---------------------------------------------------------------------

    def busy(self) -> bool:
        with self._lock:
            return self._worker is not None and self._worker.is_alive()

    def _in_worker(self, name: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:  # the worker must never die silently; the report says why
                log.exception("controller %s failed", name)
                self.detail = f"{name} failed unexpectedly; see the agent log"
            finally:
                self._report_quietly()

        with self._lock:
            self._worker = threading.Thread(target=run, name=f"gca-controller-{name}", daemon=True)
            self._worker.start()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for the worker thread (tests, shutdown); True when it is idle."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout=timeout_s)
        return not self.busy()

    def start(self) -> None:
        """Bring up what this node served last (or its base config) on the worker thread."""
        config = self._saved.config

        def bring_up() -> None:
            try:
                self.controller.start(config)
            except ApplyError as exc:
                self.state = "down"
                self.detail = f"initial start failed: {exc.reason}"
                return
            self.state = "serving"

        self._in_worker("start", bring_up)

    def _apply(self, desired: Desired) -> None:
        assert desired.config is not None
        generation = desired.generation
        self.working_on = generation
        self.state = "applying"
        self._report_quietly()
        log.info("applying generation %d: %s", generation, desired.config.to_json())
        try:
            self.controller.apply(desired.config)
        except ApplyError as exc:
            log.warning("generation %d failed (%s); previous config %s", generation, exc.reason,
                        "restored" if exc.restored else "NOT restored")  # fmt: skip
            self._saved.failed.add(generation)
            self._saved.last_failure = Failure(generation, exc.reason, self.clock(), exc.restored)
            self.state = "serving" if exc.restored else "down"
            self.detail = exc.reason
        else:
            self._applied(desired)
        finally:
            self.working_on = None
            self._save()

    def _applied(self, desired: Desired) -> None:
        self._saved.applied_generation = desired.generation
        self._saved.config = desired.config
        self.state = "serving"
        self.detail = ""
        self._down_since = None
        if desired.probe_interval_s > 0 and desired.probe_for_s > 0:
            self._probe_interval_s = desired.probe_interval_s
            self._probe_until = self.clock() + desired.probe_for_s
            self._next_probe = 0.0

    def _restart(self) -> None:
        self.state = "restoring"
        try:
            self.controller.restart()
        except ApplyError as exc:
            self.state = "down"
            self.detail = f"restart failed: {exc.reason}"
            return
        self.state = "serving"
        self._down_since = None

    # -- the periodic task -----------------------------------------------------------------

    def tick(self, now_s: float) -> None:
        desired = self._fetch()
        if not self.busy():
            health = self.controller.check()
            if desired is not None and self._wants(desired):
                assert desired.config is not None
                if health.healthy and desired.config == self.controller.running_config():
                    log.info("generation %d is what already serves: adopted", desired.generation)
                    self._applied(desired)
                    self._save()
                else:
                    self._in_worker("apply", lambda: self._apply(desired))
            elif not health.running:
                self._on_down(health)
            else:
                self._down_since = None
                self._failed_checks = 0 if health.healthy else self._failed_checks + 1
                # One slow /health on a busy machine is not an outage (kubelet's
                # failureThreshold, 3 by default, makes the same call).
                if health.healthy:
                    self.state = "serving"
                elif self._failed_checks >= UNHEALTHY_AFTER_CHECKS:
                    self.state, self.detail = "unhealthy", health.detail
        self._probe(now_s)
        self._report_quietly()

    def _wants(self, desired: Desired) -> bool:
        return (
            desired.config is not None
            and desired.generation > self._saved.applied_generation
            and desired.generation not in self._saved.failed
        )

    def _on_down(self, health: Health) -> None:
        now = self.clock()
        self.state = "down"
        self.detail = health.detail
        if self._down_since is None:
            self._down_since = now
            return  # report the exit first; the server may roll back meanwhile
        if now - self._down_since >= self.restart_delay_s:
            self._in_worker("restart", self._restart)

    def _fetch(self) -> Desired | None:
        try:
            desired = self.source.fetch()
        except (httpx.HTTPError, TokenError, ProtocolError, ValueError) as exc:
            log.warning("desired config unavailable: %s", exc)
            return None
        self._last_desired = desired
        return desired

    def _probe(self, now_s: float) -> None:
        base_url = self.controller.base_url
        if base_url is None or now_s >= self._probe_until or now_s < self._next_probe:
            return
        if self.busy() or self.state != "serving":
            return
        self._next_probe = now_s + self._probe_interval_s
        try:
            smoke_request(self.client, base_url, self.controller.served_name, PROBE_TIMEOUT_S)
        except RuntimeError as exc:
            self.probes.failed += 1
            self.probes.last_error = str(exc)[:500]
        else:
            self.probes.ok += 1

    # -- reports ---------------------------------------------------------------------------

    def observed(self) -> Observed:
        now = self.clock()
        with self._lock:
            self.seq += 1
            seq = self.seq
        # Not `busy()`: the worker thread reports its own outcome before it has quite ended.
        healthy = self.state == "serving" and self.working_on is None
        return Observed(
            agent_started_at=self.agent_started_at,
            seq=seq,
            reported_at=now,
            controller="kubernetes" if self.controller.kind == "kubernetes" else "local",
            state=self.state,
            applied_generation=self._saved.applied_generation,
            healthy=healthy,
            working_on=self.working_on,
            config=self._saved.config,
            last_failure=self._saved.last_failure,
            restarts=self.controller.restarts,
            last_exit=self.controller.last_exit,
            metrics=self._metrics(now) if healthy else None,
            probes=self.probes.to_json(),
            detail=self.detail,
        )

    def _metrics(self, now_s: float) -> dict[str, Any] | None:
        base_url = self.controller.base_url
        if base_url is None:
            return None
        try:
            response = self.client.get(f"{base_url}/metrics", timeout=METRICS_TIMEOUT_S)
            response.raise_for_status()
            return gate_metrics(response.text, self.controller.served_name, now_s)
        except (httpx.HTTPError, VllmMetricsError) as exc:
            log.debug("metrics unavailable: %s", exc)
            return None

    def _report_quietly(self) -> None:
        try:
            self.source.report(self.observed())
        except (httpx.HTTPError, TokenError, RuntimeError) as exc:
            log.warning("controller report not delivered: %s", exc)

    def close(self) -> None:
        self.controller.close()
