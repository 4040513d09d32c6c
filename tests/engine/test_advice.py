"""Results of strategies and the planner round-trip through JSON, infinities included."""

from __future__ import annotations

import json
import math

import pytest

from advisor.engine.advice import (
    Alternative,
    ConfigChange,
    Projection,
    StrategyResult,
)
from advisor.engine.jsonable import PlainError


def _projection(**changes: float) -> Projection:
    values = {
        "gpus": 2.5, "gpus_peak": 4.0, "utilization": 0.61, "busy_fraction": 0.93,
        "ttft_p50_s": 0.12, "ttft_p95_s": 0.4, "tpot_p50_s": 0.02, "tpot_p95_s": 0.031,
        "slo_attainment": 0.991, "usd_per_hour": 12.3, "usd_per_month": 8979.0,
        "usd_per_1m_output_tokens": 1.7, "energy_j_per_output_token": 0.9,
        "requests_per_s": 4.2, "output_tokens_per_s": 880.0,
    }  # fmt: skip
    values.update(changes)
    return Projection(**values)  # type: ignore[arg-type]


def test_it_round_trips_a_strategy_result_with_infinities() -> None:
    result = StrategyResult(
        strategy="batching",
        deployment="chat",
        status="recommended",
        summary="x",
        baseline=_projection(),
        projected=_projection(ttft_p95_s=math.inf, usd_per_month=100.0),
        config_change=ConfigChange(
            engine_args={"--max-num-seqs": 512, "--enable-chunked-prefill": False},
            manifests={"hpa.yaml": "apiVersion: autoscaling/v2\n"},
        ),
        alternatives=(Alternative("a", {"k": [1, 2]}, None, False, "OOM"),),
        assumptions=("one",),
        details={"table": [{"batch": 1, "speedup": 1.9}]},
    )
    text = result.to_json()
    assert "Infinity" in text
    json.loads(text)  # strict JSON (no bare Infinity)
    again = StrategyResult.from_json(text)
    assert again == result
    assert again.savings_usd_per_month == pytest.approx(8879.0)
    assert result.config_change.cli_args() == [
        "--max-num-seqs",
        "512",
        "--no-enable-chunked-prefill",
    ]


def test_it_names_the_path_of_a_bad_value() -> None:
    data = _projection().to_dict()
    data["gpus"] = "two"
    with pytest.raises(PlainError, match=r"^gpus: must be a number"):
        Projection.from_dict(data)
