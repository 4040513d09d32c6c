from __future__ import annotations

import pytest

from tests.engine.public_kinds import kind_choices, usd_per_million_tokens


def test_it_prices_a_million_tokens_from_the_catalog() -> None:
    # H100-SXM at $4.91625 per GPU-hour and 370.26 tok/s per GPU
    assert usd_per_million_tokens("H100-SXM", 370.26) == pytest.approx(
        4.91625 / (370.26 * 3600) * 1e6
    )


def test_the_engine_picks_the_kind_the_measurements_pick() -> None:
    choices = kind_choices()
    assert [choice.workload for choice in choices] == [
        (1024, 1024, 4), (1024, 1024, 64), (1024, 8192, 4),
        (1024, 8192, 64), (8192, 1024, 4), (8192, 1024, 64),
    ]  # fmt: skip
    for choice in choices:
        assert choice.measured_order[0] == "B200"
        assert choice.predicted_order[0] == choice.measured_order[0], choice.workload
        measured = choice.measured_usd_per_mtok["B200"]
        assert choice.predicted_usd_per_mtok["B200"] == pytest.approx(measured, rel=0.2)
