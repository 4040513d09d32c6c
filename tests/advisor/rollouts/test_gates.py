"""Bake gates from two agent reports: health, evidence, errors, latency p95 against the SLO."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.rollouts.gates import GateConfigError, GateLimits, evaluate
from probes.agent.vllm_metrics import Histogram
from tests.advisor.rollouts.helpers import histogram, metrics

LIMITS = GateLimits(ttft_p95_s=0.5, tpot_p95_s=0.05, max_error_rate=0.01, min_requests=3)


def _report(requests: int, *, generation: int = 2, **extra: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "agent_started_at": 1.0, "state": "serving", "healthy": True, "restarts": 0,
        "applied_generation": generation, "probes": {"ok": 0, "failed": 0},
        "metrics": metrics(requests, errors=extra.pop("errors", 0),
                           ttft_s=extra.pop("ttft_s", 0.04)),
    }  # fmt: skip
    report.update(extra)
    return report


def _failed(start: dict[str, Any], now: dict[str, Any]) -> dict[str, str]:
    verdict = evaluate(start, now, 2, LIMITS)
    return {r.name: r.detail for r in verdict.results if not r.passed}


def test_a_healthy_bake_passes_every_gate() -> None:
    verdict = evaluate(_report(10), _report(40), 2, LIMITS)
    assert verdict.passed
    assert verdict.reason == "all gates passed"
    results = {r.name: r for r in verdict.results}
    assert results["requests"].value == 30
    assert results["ttft_p95"].value == pytest.approx(0.05 * 0.95 + 0.025 * 0.05, rel=0.2)


def test_the_window_is_the_difference_of_cumulative_counters() -> None:
    # 100 slow requests before the bake do not count; the 30 fast ones in it do.
    start = _report(100, ttft_s=0.9)
    now = _report(130)
    slow = Histogram.from_json(histogram(100, 0.9))
    now["metrics"]["ttft"] = Histogram.from_json(histogram(30, 0.04)).plus(slow).to_json()
    assert "ttft_p95" not in _failed(start, now)
    assert "ttft_p95" in _failed(_report(0), now)  # over the whole life it would fail


def test_latency_over_the_slo_fails_with_value_and_limit() -> None:
    failed = _failed(_report(0), _report(20, ttft_s=0.9))
    assert list(failed) == ["ttft_p95"]
    assert "SLO 500 ms" in failed["ttft_p95"]


def test_server_errors_over_the_limit_fail() -> None:
    failed = _failed(_report(0), _report(50, errors=5))
    assert failed["error_rate"] == "5 server errors in 50 requests (10.0%)"


def test_failed_probes_fail_their_own_gate() -> None:
    now = _report(20, probes={"ok": 8, "failed": 2, "last_error": "smoke request answered 500"})
    failed = _failed(_report(0), now)
    assert failed["probe_error_rate"].startswith("2 of 10 probes failed (last: smoke request")


def test_no_evidence_is_no_pass() -> None:
    failed = _failed(_report(5), _report(5))
    assert failed["requests"] == "0 requests in the window (at least 3 needed)"
    assert failed["ttft_p95"] == "no observations in the window"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"restarts": 1, "last_exit": {"code": -9}}, "vLLM exited during the bake (status -9, 1x)"),
        ({"agent_started_at": 5.0}, "the agent restarted during the bake"),
        ({"state": "unhealthy", "healthy": False, "detail": "/health failing"},
         "the node is unhealthy: /health failing"),
        ({"applied_generation": 3}, "the node runs generation 3, not 2"),
    ],
)  # fmt: skip
def test_any_sign_of_a_restart_or_other_config_fails_health(
    change: dict[str, Any], reason: str
) -> None:
    failed = _failed(_report(0), {**_report(20), **change})
    assert failed["health"].startswith(reason)


def test_limits_are_checked_naming_the_field() -> None:
    for data, message in (
        ({"tpot_p95_s": 0.1}, "gates.ttft_p95_s: required"),
        ({"ttft_p95_s": -1, "tpot_p95_s": 0.1}, "gates.ttft_p95_s: seconds"),
        ({"ttft_p95_s": 1, "tpot_p95_s": 0.1, "min_requests": 2.5}, "gates.min_requests"),
        ({"ttft_p95_s": True, "tpot_p95_s": 0.1}, "gates.ttft_p95_s: expected a number"),
    ):
        with pytest.raises(GateConfigError, match=message.replace(".", r"\.")):
            GateLimits.from_json(data)
