"""JSON and CSV export: a round trip keeps every measured value; CSV columns are stable."""

from __future__ import annotations

import csv
import io
import json

import pytest

from advisor.benchmarking.export import (
    REQUEST_COLUMNS,
    dumps,
    load_json,
    requests_csv,
    summaries_csv,
    summary_columns,
)
from advisor.benchmarking.results import BenchmarkResult, PromptReport
from advisor.benchmarking.summary import summarize
from tests.advisor.benchmarking.test_summary import REQUESTS


def _result() -> BenchmarkResult:
    return BenchmarkResult(
        status="completed",
        error="",
        target={"base_url": "http://node:8000", "model": "m"},
        workload_name="closed loop x2",
        started_at_unix_s=1.7e9,
        duration_s=2.0,
        requests=tuple(REQUESTS),
        summary=summarize(REQUESTS, 2.0),
        server_metrics={"generation_tokens": 9.0, "spec_decode_acceptance_rate": float("nan")},
        prompts=PromptReport(mode="token_ids", count=5),
        warnings=("cancel: RuntimeError()",),
    )


def test_it_round_trips_json() -> None:
    original = _result()
    text = dumps(original)

    json.loads(text)  # strict JSON: NaN became null
    assert "NaN" not in text
    again = load_json(text)
    assert again.requests == original.requests
    assert again.summary == original.summary
    assert again.prompts == original.prompts
    assert again.warnings == original.warnings
    assert again.server_metrics["spec_decode_acceptance_rate"] is None


def test_it_writes_one_csv_row_per_request() -> None:
    rows = list(csv.DictReader(io.StringIO(requests_csv(REQUESTS))))

    assert tuple(rows[0]) == REQUEST_COLUMNS
    assert [row["status"] for row in rows] == ["ok", "ok", "timeout", "not_sent", "ok"]
    assert float(rows[0]["ttft_ms"]) == pytest.approx(100.0)
    assert float(rows[0]["tpot_ms"]) == pytest.approx(100.0)
    assert [float(gap) for gap in rows[1]["itl_ms"].split()] == [500.0, 500.0]
    assert rows[3]["sent_s"] == ""
    assert rows[2]["error"] == "ServerTimeoutError"


def test_it_writes_one_csv_row_per_run() -> None:
    result = _result()
    rows = list(
        csv.DictReader(io.StringIO(summaries_csv([("rate 1", result), ("rate 2", result)])))
    )

    assert list(rows[0]) == summary_columns()
    assert [row["label"] for row in rows] == ["rate 1", "rate 2"]
    assert float(rows[0]["output_throughput"]) == pytest.approx(4.5)
    assert rows[0]["request_goodput"] == ""
    assert "p99_ttft_ms" in rows[0]
