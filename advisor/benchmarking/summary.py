"""Summary statistics of a run, named like `vllm bench serve`'s result JSON where they overlap.

`summarize(requests, duration_s, slo)` returns a flat dict:

- counts: `num_requests`, `completed` (ok), `failed` (error or timeout), `cancelled`,
  `not_sent`; `total_input_tokens`, `total_output_tokens` (from usage, completed requests).
- throughput over `duration` (s): `request_throughput`, `output_throughput`,
  `total_token_throughput`; with an SLO, `request_goodput` (requests meeting every SLO per
  second) and `slo_attainment` (their share of the requests sent).
- latency in ms for `ttft`, `tpot`, `itl`, `e2el`: `mean_`, `median_`, `std_` (population) and
  `p50_`, `p90_`, `p95_`, `p99_` (numpy linear percentiles, like vLLM). None when no request
  gave a value (vLLM prints 0 there; None does not pretend).
- `max_output_tokens_per_s`, `max_concurrent_requests`: peak 1-second bucket, as vLLM.
- ours: `mean_queue_ms`, `p99_queue_ms` (waiting for the concurrency cap),
  `prompt_tokens_mismatched` (completed requests whose usage.prompt_tokens differs from the
  requested length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from advisor.benchmarking.results import RequestResult

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
LATENCY_METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el")


class SloError(ValueError):
    """An SLO value is out of range; the message names the field."""


@dataclass(frozen=True)
class Slo:
    """Per-request latency objectives (ms), as `vllm bench serve --goodput ttft:X tpot:Y`.

    A request is good when it completed and every given objective holds (a TPOT of a
    one-token answer counts as 0, as in vLLM). A run meets the SLO when the good share of the
    requests sent is at least `min_attainment`.
    """

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None
    min_attainment: float = 0.9

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms", "e2el_ms"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise SloError(f"{name}: must be a number > 0, got {value!r}")
        if self.ttft_ms is None and self.tpot_ms is None and self.e2el_ms is None:
            raise SloError("slo: give at least one of ttft_ms, tpot_ms, e2el_ms")
        if not 0.0 < self.min_attainment <= 1.0:
            raise SloError(f"min_attainment: must be in (0, 1], got {self.min_attainment!r}")

    def is_good(self, request: RequestResult) -> bool:
        if not request.ok or request.ttft_s is None or request.e2e_s is None:
            return False
        checks = (
            (self.ttft_ms, request.ttft_s),
            (self.tpot_ms, request.tpot_s or 0.0),
            (self.e2el_ms, request.e2e_s),
        )
        return all(limit is None or value * 1000.0 <= limit for limit, value in checks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    requests: Sequence[RequestResult], duration_s: float, slo: Slo | None = None
) -> dict[str, Any]:
    """The run's summary (see the module docstring for every field)."""
    done = [request for request in requests if request.ok]
    sent = [request for request in requests if request.status != "not_sent"]
    duration = duration_s if duration_s > 0 else math.nan
    total_in = sum(request.prompt_tokens or 0 for request in done)
    total_out = sum(request.output_tokens or 0 for request in done)
    summary: dict[str, Any] = {
        "duration": duration_s,
        "num_requests": len(requests),
        "completed": len(done),
        "failed": sum(1 for request in requests if request.status in ("error", "timeout")),
        "cancelled": sum(1 for request in requests if request.status == "cancelled"),
        "not_sent": len(requests) - len(sent),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": _finite(len(done) / duration),
        "request_goodput": None,
        "output_throughput": _finite(total_out / duration),
        "total_token_throughput": _finite((total_in + total_out) / duration),
    }
    if slo is not None:
        good = sum(1 for request in done if slo.is_good(request))
        summary["request_goodput"] = _finite(good / duration)
        summary["slo_attainment"] = good / len(sent) if sent else None
    series: dict[str, npt.NDArray[np.float64]] = {
        "ttft": _array(request.ttft_s for request in done),
        "tpot": _array(request.tpot_s for request in done),
        "itl": (
            np.concatenate([np.asarray(request.itl_s, dtype=np.float64) for request in done])
            if done
            else np.zeros(0)
        ),
        "e2el": _array(request.e2e_s for request in done),
    }
    for metric in LATENCY_METRICS:
        summary.update(_stats_ms(metric, series[metric]))
    queue = _array(request.queue_s for request in sent)
    summary["mean_queue_ms"] = float(queue.mean() * 1000.0) if queue.size else None
    summary["p99_queue_ms"] = float(np.percentile(queue, 99) * 1000.0) if queue.size else None
    summary["prompt_tokens_mismatched"] = sum(
        1
        for request in done
        if request.prompt_tokens is not None
        and request.prompt_tokens != request.expected_prompt_tokens
    )
    summary.update(_peaks(done))
    return summary


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _array(values: Any) -> npt.NDArray[np.float64]:
    return np.asarray([value for value in values if value is not None], dtype=np.float64)


def _stats_ms(metric: str, values_s: npt.NDArray[np.float64]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    empty = values_s.size == 0
    ms = values_s * 1000.0
    out[f"mean_{metric}_ms"] = None if empty else float(ms.mean())
    out[f"median_{metric}_ms"] = None if empty else float(np.median(ms))
    out[f"std_{metric}_ms"] = None if empty else float(ms.std())
    for p in PERCENTILES:
        out[f"p{_percent_word(p)}_{metric}_ms"] = None if empty else float(np.percentile(ms, p))
    return out


def _percent_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def _peaks(done: Sequence[RequestResult]) -> dict[str, float | int]:
    """Peak output tokens in any 1-second bucket and requests active in it (vLLM's method)."""
    timed = [r for r in done if r.sent_s is not None and r.ttft_s is not None and r.e2e_s]
    if not timed:
        return {"max_output_tokens_per_s": 0.0, "max_concurrent_requests": 0}
    origin = min(r.sent_s for r in timed if r.sent_s is not None)
    end = max((r.sent_s or 0.0) + (r.e2e_s or 0.0) for r in timed)
    buckets = math.ceil(end - origin) + 1
    token_times = np.concatenate(
        [
            (r.sent_s or 0.0) - origin + (r.ttft_s or 0.0)
            + np.concatenate(([0.0], np.cumsum(np.asarray(r.itl_s, dtype=np.float64))))
            for r in timed
        ]
    )  # fmt: skip
    tokens = np.bincount(token_times.astype(np.int64).clip(0, buckets - 1), minlength=buckets)
    active = np.zeros(buckets + 1, dtype=np.int64)
    for r in timed:
        first = int((r.sent_s or 0.0) - origin)
        last = int((r.sent_s or 0.0) + (r.e2e_s or 0.0) - origin)
        active[first] += 1
        active[min(last + 1, buckets)] -= 1
    return {
        "max_output_tokens_per_s": float(tokens.max()),
        "max_concurrent_requests": int(np.cumsum(active)[:buckets].max()),
    }
