"""The shared value bounds: what is in range, and the message naming what is not."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from advisor.engine.bounds import (
    BOUNDS,
    PRICE_AS_OF,
    PRICE_USD_PER_GPU_HOUR,
    REPLICAS,
    TTFT_P95_S,
    RefusedValue,
)


@pytest.mark.parametrize(
    ("bound", "value", "problem"),
    [
        (PRICE_USD_PER_GPU_HOUR, 0, None),
        (PRICE_USD_PER_GPU_HOUR, Decimal("1000.0000"), None),
        (PRICE_USD_PER_GPU_HOUR, Decimal("-2.0000"),
         "must be >= 0 and <= 1000 USD per GPU-hour, got -2.0000"),
        (PRICE_USD_PER_GPU_HOUR, float("nan"),
         "must be >= 0 and <= 1000 USD per GPU-hour, got nan"),
        (PRICE_USD_PER_GPU_HOUR, "3", "must be >= 0 and <= 1000 USD per GPU-hour, got '3'"),
        (TTFT_P95_S, 0.0, "must be > 0 and <= 3600 s, got 0"),
        (TTFT_P95_S, 3600, None),
        (TTFT_P95_S, 1e308, "must be > 0 and <= 3600 s, got 1e+308"),
        (TTFT_P95_S, float("inf"), "must be > 0 and <= 3600 s, got inf"),
        (TTFT_P95_S, True, "must be > 0 and <= 3600 s, got True"),
        (REPLICAS, 512, None),
        (REPLICAS, 1.5, "must be a whole number >= 0 and <= 512, got 1.5"),
        (PRICE_AS_OF, date(2000, 1, 1), None),
        (PRICE_AS_OF, date(1900, 1, 1),
         "must be between 2000-01-01 and 2100-12-31, got 1900-01-01"),
    ],
)  # fmt: skip
def test_it_says_what_is_out_of_range(bound: object, value: object, problem: str | None) -> None:
    assert bound.problem(value) == problem  # type: ignore[attr-defined]


def test_each_bound_is_found_by_the_field_that_stores_it() -> None:
    assert sorted(BOUNDS) == [
        "as_of", "max_quality_loss_points", "min_replicas", "replicas", "tpot_p95_s",
        "ttft_p95_s",
        "usd_per_gpu_hour", "window_days",
    ]  # fmt: skip


def test_a_refused_value_names_model_row_field_and_value() -> None:
    refused = RefusedValue("probes.PriceSheet", 7, "usd_per_gpu_hour", Decimal("-2.0000"),
                           "must be >= 0; row skipped")  # fmt: skip
    assert (
        refused.text == "probes.PriceSheet #7 usd_per_gpu_hour=-2.0000: must be >= 0; row skipped"
    )
    assert refused.to_json()["value"] == "-2.0000"
