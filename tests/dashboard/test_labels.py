"""Field names in words and units, stored values for reading, ledger flags in words."""

from __future__ import annotations

import pytest

from dashboard.labels import flag_text, label, plain, sentence, term


@pytest.mark.parametrize(
    ("name", "labelled", "termed"),
    [
        ("ttft_p95_s", "TTFT p95 (s)", "TTFT p95"),
        ("max_unavailable", "nodes restarting at once (nodes)", "nodes restarting at once"),
        ("canary_bake_s", "canary bake (s)", "canary bake"),
        ("max_quality_loss_points", "quality loss at most (points)", "quality loss at most"),
        ("imported_trace", "imported trace", "imported trace"),
        ("telemetry_hours", "load telemetry (h)", "load telemetry"),
        ("some_new_field", "some new field", "some new field"),  # no entry: its words
    ],
)
def test_it_says_a_field_in_words_with_its_unit(name: str, labelled: str, termed: str) -> None:
    assert label(name) == labelled
    assert term(name) == termed


@pytest.mark.parametrize(
    ("value", "shown"),
    [(False, "no"), (True, "yes"), (None, "\u2013"), (2.5, "2.5"), (2.0, "2"), (17, "17")],
)
def test_it_shows_a_stored_value_for_reading(value: object, shown: str) -> None:
    assert plain(value) == shown


def test_it_says_a_ledger_flag_in_words() -> None:
    flag = "below_half: realized 6.2% savings on usd_per_hour is under half the projected 50.0%"
    assert flag_text(flag) == (
        "Under half the projection: realized 6.2% savings on cost per hour is under half the "
        "projected 50.0%"
    )
    worse = "slo_worse: ttft_p95_s 812 ms misses the SLO 500 ms it met before (400 ms)"
    assert flag_text(worse) == (
        "Latency SLO worse: TTFT p95 812 ms misses the SLO 500 ms it met before (400 ms)"
    )
    assert flag_text("other: max_num_seqs stays") == "other: max_num_seqs stays"  # not ours
    assert sentence("a vllm arg max_num_seqs and usd_per_1m_tokens") == (
        "a vllm arg max_num_seqs and cost per million output tokens"
    )
