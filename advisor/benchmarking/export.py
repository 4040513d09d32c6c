"""Export runs as JSON (everything) and CSV (one row per request, or one row per run).

JSON is `BenchmarkResult.to_json()` (summary named like `vllm bench serve`, per-request rows,
server metrics, config) and reads back with `load_json`. The per-request CSV keeps the raw
ITLs in one `itl_ms` column (space-separated) so nothing measured is lost; the per-run CSV
(`summaries_csv`) puts sweep points side by side.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from advisor.benchmarking.results import BenchmarkResult, RequestResult
from advisor.benchmarking.summary import LATENCY_METRICS, PERCENTILES

REQUEST_COLUMNS: tuple[str, ...] = (
    "index", "status", "scheduled_s", "sent_s", "queue_s", "ttft_ms", "tpot_ms", "e2el_ms",
    "prompt_tokens", "output_tokens", "expected_prompt_tokens", "expected_output_tokens",
    "tokens_from_usage", "http_status", "error", "itl_ms",
)  # fmt: skip


def summary_columns() -> list[str]:
    """The per-run CSV columns, in a stable order."""
    head = [
        "label", "status", "duration", "num_requests", "completed", "failed", "cancelled",
        "not_sent", "total_input_tokens", "total_output_tokens", "request_throughput",
        "request_goodput", "slo_attainment", "output_throughput", "total_token_throughput",
    ]  # fmt: skip
    latency = [
        f"{stat}_{metric}_ms"
        for metric in LATENCY_METRICS
        for stat in ("mean", "median", "std", *(f"p{int(p)}" for p in PERCENTILES))
    ]
    tail = ["max_output_tokens_per_s", "max_concurrent_requests", "mean_queue_ms", "error"]
    return head + latency + tail


def dumps(result: BenchmarkResult, *, include_requests: bool = True) -> str:
    """The run as JSON text (non-finite numbers become null, so any JSON reader accepts it)."""
    return json.dumps(finite_json(result.to_json(include_requests=include_requests)), indent=1)


def load_json(text: str) -> BenchmarkResult:
    return BenchmarkResult.from_json(json.loads(text))


def requests_csv(requests: Iterable[RequestResult]) -> str:
    """One row per request (see REQUEST_COLUMNS); times in the unit their name says."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    for request in requests:
        writer.writerow(
            [
                request.index, request.status, _num(request.scheduled_s), _num(request.sent_s),
                _num(request.queue_s), _ms(request.ttft_s), _ms(request.tpot_s),
                _ms(request.e2e_s), _num(request.prompt_tokens), _num(request.output_tokens),
                request.expected_prompt_tokens, request.expected_output_tokens,
                request.tokens_from_usage, _num(request.http_status), request.error,
                " ".join(f"{gap * 1000.0:.4f}" for gap in request.itl_s),
            ]
        )  # fmt: skip
    return out.getvalue()


def summaries_csv(runs: Sequence[tuple[str, BenchmarkResult]]) -> str:
    """One row per labelled run (e.g. each point of a sweep)."""
    columns = summary_columns()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for label, result in runs:
        row: dict[str, Any] = {key: _num(value) for key, value in result.summary.items()}
        row.update(label=label, status=result.status, error=result.error)
        writer.writerow(row)
    return out.getvalue()


def _ms(value_s: float | None) -> str:
    return "" if value_s is None else f"{value_s * 1000.0:.4f}"


def _num(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def finite_json(value: Any) -> Any:
    """`value` with NaN and infinities made None, nested (JSON and PostgreSQL refuse them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value
