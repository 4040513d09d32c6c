"""Summary statistics: exact values on hand-made requests, vLLM's definitions and names."""

from __future__ import annotations

import math

import pytest

from advisor.benchmarking.results import RequestResult
from advisor.benchmarking.summary import Slo, SloError, summarize


def _ok(index: int, sent_s: float, ttft_s: float, e2e_s: float, itl_s: tuple[float, ...],
        prompt: int, output: int) -> RequestResult:  # fmt: skip
    return RequestResult(
        index=index, status="ok", scheduled_s=sent_s, expected_prompt_tokens=prompt,
        expected_output_tokens=output, sent_s=sent_s, ttft_s=ttft_s, e2e_s=e2e_s, itl_s=itl_s,
        prompt_tokens=prompt, output_tokens=output,
    )  # fmt: skip


REQUESTS = [
    _ok(0, 0.0, 0.1, 0.5, (0.1, 0.1, 0.1, 0.1), prompt=10, output=5),
    _ok(1, 0.2, 0.2, 1.2, (0.5, 0.5), prompt=20, output=3),
    RequestResult(
        index=2,
        status="timeout",
        scheduled_s=0.3,
        expected_prompt_tokens=8,
        expected_output_tokens=8,
        sent_s=0.3,
        error="ServerTimeoutError",
    ),
    RequestResult(
        index=3,
        status="not_sent",
        scheduled_s=0.4,
        expected_prompt_tokens=8,
        expected_output_tokens=8,
    ),
    _ok(4, 1.5, 0.3, 0.3, (), prompt=5, output=1),
]


def test_it_counts_and_divides_by_the_duration() -> None:
    summary = summarize(REQUESTS, duration_s=2.0)

    assert summary["num_requests"] == 5
    assert summary["completed"] == 3
    assert summary["failed"] == 1
    assert summary["not_sent"] == 1
    assert summary["cancelled"] == 0
    assert summary["total_input_tokens"] == 35
    assert summary["total_output_tokens"] == 9
    assert summary["request_throughput"] == pytest.approx(1.5)
    assert summary["output_throughput"] == pytest.approx(4.5)
    assert summary["total_token_throughput"] == pytest.approx(22.0)
    assert summary["request_goodput"] is None
    assert "slo_attainment" not in summary


def test_it_computes_latency_statistics_like_vllm() -> None:
    summary = summarize(REQUESTS, duration_s=2.0)

    assert summary["mean_ttft_ms"] == pytest.approx(200.0)
    assert summary["median_ttft_ms"] == pytest.approx(200.0)
    assert summary["std_ttft_ms"] == pytest.approx(math.sqrt(20000 / 3))  # population std
    # TPOT = (e2e - ttft) / (output - 1), only for requests with more than one token
    assert summary["mean_tpot_ms"] == pytest.approx(300.0)
    assert summary["p99_tpot_ms"] == pytest.approx(100.0 + 0.99 * 400.0)
    # ITL pools every gap of every request: [100]*4 + [500]*2
    assert summary["mean_itl_ms"] == pytest.approx(1400 / 6)
    assert summary["median_itl_ms"] == pytest.approx(100.0)
    assert summary["p90_itl_ms"] == pytest.approx(500.0)
    assert summary["mean_e2el_ms"] == pytest.approx(2000 / 3)
    assert summary["p50_e2el_ms"] == pytest.approx(500.0)


def test_it_finds_the_peak_second_like_vllm() -> None:
    summary = summarize(REQUESTS, duration_s=2.0)

    # second 0: 5 frames of request 0 + 2 of request 1; second 1: 1 + 1
    assert summary["max_output_tokens_per_s"] == 7.0
    assert summary["max_concurrent_requests"] == 2


def test_it_scores_goodput_against_the_slo() -> None:
    summary = summarize(REQUESTS, duration_s=2.0, slo=Slo(ttft_ms=250, tpot_ms=200))

    # good: request 0 only (1: TPOT 500 ms; 4: TTFT 300 ms; 2 timed out); 4 were sent
    assert summary["request_goodput"] == pytest.approx(0.5)
    assert summary["slo_attainment"] == pytest.approx(0.25)


def test_it_counts_a_one_token_answer_as_zero_tpot_for_goodput() -> None:
    slo = Slo(tpot_ms=1.0)
    assert slo.is_good(REQUESTS[4])
    assert not slo.is_good(REQUESTS[2])


def test_it_gives_none_rather_than_zero_when_nothing_completed() -> None:
    summary = summarize(REQUESTS[2:4], duration_s=1.0)

    assert summary["completed"] == 0
    assert summary["mean_ttft_ms"] is None
    assert summary["p99_itl_ms"] is None
    assert summary["output_throughput"] == 0.0
    assert summary["max_output_tokens_per_s"] == 0.0


def test_it_gives_none_for_rates_over_no_time() -> None:
    summary = summarize([], duration_s=0.0)

    assert summary["request_throughput"] is None
    assert summary["output_throughput"] is None


def test_it_counts_prompts_that_missed_their_length() -> None:
    off = RequestResult(**{**REQUESTS[0].__dict__, "prompt_tokens": 11})

    assert summarize([off, REQUESTS[1]], 1.0)["prompt_tokens_mismatched"] == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "slo"),
        ({"ttft_ms": 0}, "ttft_ms"),
        ({"tpot_ms": "fast"}, "tpot_ms"),
        ({"ttft_ms": 100, "min_attainment": 1.5}, "min_attainment"),
    ],
)
def test_it_names_a_bad_slo_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SloError, match=field):
        Slo(**kwargs)  # type: ignore[arg-type]
