"""Bake gates: is a node healthy, error-free and within its latency SLO after a change?

Inputs are two agent reports (`probes.agent.desired.Observed` JSON): the one when the bake
started and the latest. Counters and histograms in a report are cumulative, so the bake
window is their difference (a histogram minus its earlier self; a reset, i.e. a restarted
process, is caught by the health gate first).

Gates, each with its measured value and limit in the verdict:
- `health`: the node serves the generation under test, healthy, with no restart of the
  process and no agent restart since the bake started;
- `requests`: at least `min_requests` finished in the window (user traffic plus the agent's
  probes): with no evidence there is no verdict, so the gate fails;
- `error_rate`: server errors (5xx answers of the OpenAI routes, requests finished with
  reason "error") over requests, at most `max_error_rate`;
- `probe_error_rate`: failed agent probes over probes, at most `max_error_rate`;
- `ttft_p95` and `tpot_p95`: 95th percentiles of the window's TTFT and per-request TPOT
  histograms (vLLM's own), at most the SLO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes.agent.vllm_metrics import Histogram, VllmMetricsError

DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MIN_REQUESTS = 3
GATE_KEYS = ("ttft_p95_s", "tpot_p95_s", "max_error_rate", "min_requests")


class GateConfigError(ValueError):
    """Gate limits are malformed; the message starts with the field."""


@dataclass(frozen=True)
class GateLimits:
    ttft_p95_s: float
    tpot_p95_s: float
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    min_requests: int = DEFAULT_MIN_REQUESTS

    def to_json(self) -> dict[str, Any]:
        return {
            "ttft_p95_s": self.ttft_p95_s,
            "tpot_p95_s": self.tpot_p95_s,
            "max_error_rate": self.max_error_rate,
            "min_requests": self.min_requests,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateLimits:
        values: dict[str, Any] = {}
        for key in GATE_KEYS:
            if key not in data:
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise GateConfigError(f"gates.{key}: expected a number, got {value!r}")
            if key in ("ttft_p95_s", "tpot_p95_s") and not 0 < value <= 3600:
                raise GateConfigError(f"gates.{key}: seconds, > 0 and at most 3600")
            if key == "max_error_rate" and not 0 <= value <= 1:
                raise GateConfigError("gates.max_error_rate: a fraction 0..1 (0.01 = 1%)")
            if key == "min_requests":
                if int(value) != value or not 0 <= value <= 1_000_000:
                    raise GateConfigError("gates.min_requests: an integer 0..1000000")
                value = int(value)
            values[key] = value
        for key in ("ttft_p95_s", "tpot_p95_s"):
            if key not in values:
                raise GateConfigError(f"gates.{key}: required")
        return cls(**values)


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "limit": self.limit,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Verdict:
    passed: bool
    results: tuple[GateResult, ...]

    @property
    def reason(self) -> str:
        failed = [r for r in self.results if not r.passed]
        return "; ".join(f"{r.name}: {r.detail}" for r in failed) or "all gates passed"

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [r.to_json() for r in self.results]}


def health_problem(start: Mapping[str, Any], now: Mapping[str, Any], generation: int) -> str | None:
    """Why the node is not healthy on `generation` since `start` (None: it is)."""
    if now.get("applied_generation") != generation:
        failure = now.get("last_failure") or {}
        if failure.get("generation") == generation:
            return f"the node could not apply it: {failure.get('error', '?')}"
        return (
            f"the node runs generation {now.get('applied_generation')}, not {generation} "
            f"(state {now.get('state')})"
        )
    if now.get("agent_started_at") != start.get("agent_started_at"):
        return "the agent restarted during the bake (its vLLM restarted with it)"
    restarts = _number(now.get("restarts")) - _number(start.get("restarts"))
    if restarts > 0:
        exit_info = now.get("last_exit") or {}
        return f"vLLM exited during the bake (status {exit_info.get('code')}, {restarts:.0f}x)"
    if now.get("state") != "serving" or not now.get("healthy"):
        detail = now.get("detail") or ""
        return f"the node is {now.get('state')}{': ' + detail if detail else ''}"
    return None


def evaluate(
    start: Mapping[str, Any], now: Mapping[str, Any], generation: int, limits: GateLimits
) -> Verdict:
    """The verdict of a bake from its first and latest reports (see the module docstring)."""
    results: list[GateResult] = []
    problem = health_problem(start, now, generation)
    results.append(GateResult("health", problem is None, None, None, problem or "serving"))
    m0 = start.get("metrics") or {}
    m1 = now.get("metrics") or {}
    requests = _delta(m1, m0, "requests_total")
    http_total = _delta(m1, m0, "http_total")
    server_errors = max(_delta(m1, m0, "http_5xx"), _delta(m1, m0, "requests_error"))
    finished = max(requests, http_total)
    p0, p1 = start.get("probes") or {}, now.get("probes") or {}
    probes_ok = _delta(p1, p0, "ok")
    probes_failed = _delta(p1, p0, "failed")
    seen = max(finished, probes_ok + probes_failed)
    results.append(
        GateResult(
            "requests",
            seen >= limits.min_requests,
            seen,
            float(limits.min_requests),
            f"{seen:.0f} requests in the window (at least {limits.min_requests} needed)",
        )
    )
    rate = server_errors / finished if finished > 0 else 0.0
    results.append(
        GateResult(
            "error_rate",
            rate <= limits.max_error_rate,
            rate,
            limits.max_error_rate,
            f"{server_errors:.0f} server errors in {finished:.0f} requests ({rate:.1%})",
        )
    )
    probes = probes_ok + probes_failed
    probe_rate = probes_failed / probes if probes > 0 else 0.0
    last = p1.get("last_error") or ""
    results.append(
        GateResult(
            "probe_error_rate",
            probe_rate <= limits.max_error_rate,
            probe_rate,
            limits.max_error_rate,
            f"{probes_failed:.0f} of {probes:.0f} probes failed"
            + (f" (last: {last[:200]})" if probes_failed and last else ""),
        )
    )
    for name, key, limit in (
        ("ttft_p95", "ttft", limits.ttft_p95_s),
        ("tpot_p95", "tpot", limits.tpot_p95_s),
    ):
        results.append(_latency_gate(name, m0.get(key), m1.get(key), limit))
    return Verdict(all(r.passed for r in results), tuple(results))


def _latency_gate(name: str, before: Any, after: Any, limit_s: float) -> GateResult:
    try:
        window = _window(before, after)
    except VllmMetricsError as exc:
        return GateResult(name, False, None, limit_s, f"unreadable histogram: {exc}")
    p95 = window.quantile(0.95) if window is not None else None
    if p95 is None:
        return GateResult(name, False, None, limit_s, "no observations in the window")
    return GateResult(
        name,
        p95 <= limit_s,
        p95,
        limit_s,
        f"p95 {p95 * 1000:.0f} ms over {window.count:.0f} requests (SLO {limit_s * 1000:.0f} ms)"
        if window is not None
        else "",
    )


def _window(before: Any, after: Any) -> Histogram | None:
    if not isinstance(after, Mapping):
        return None
    later = Histogram.from_json(after)
    if isinstance(before, Mapping):
        return later.minus(Histogram.from_json(before))
    return later


def _delta(now: Mapping[str, Any], start: Mapping[str, Any], key: str) -> float:
    return max(0.0, _number(now.get(key)) - _number(start.get(key)))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
