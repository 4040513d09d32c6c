"""Workloads: validation, generators, the Azure trace loader and resampling."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.engine.prefix_cache import reused_prompt_share
from advisor.engine.workload import (
    PrefixBlocks,
    Workload,
    WorkloadError,
    closed_loop_workload,
    gamma_arrivals_s,
    load_azure_trace,
    load_mooncake_trace,
    poisson_arrivals_s,
    resample_workload,
    synthetic_workload,
    uniform_lengths,
)

TRACES = Path(__file__).resolve().parents[2] / "probes" / "data" / "traces"
CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"
CODE = TRACES / "AzureLLMInferenceTrace_code.csv"


def test_it_copies_and_freezes_the_arrays() -> None:
    arrival = np.array([0.0, 1.0])
    workload = Workload(arrival, np.array([5, 6]), np.array([1, 2]))
    arrival[0] = 9.0
    assert workload.arrival_s[0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        workload.prompt_tokens[0] = 1
    assert workload.prompt_tokens.dtype == np.int64
    assert workload.num_requests == 2 == len(workload)


@pytest.mark.parametrize(
    ("arrival", "prompt", "output", "field"),
    [
        ([0.0, 1.0], [1], [1, 1], "same length"),
        ([1.0, 0.5], [1, 1], [1, 1], "arrival_s: decreases at index 1"),
        ([-1.0], [1], [1], "arrival_s: must be >= 0"),
        ([0.0, math.nan], [1, 1], [1, 1], "arrival_s: not finite at index 1"),
        ([0.0], [0], [1], "prompt_tokens: must be >= 1 \\(index 0\\)"),
        ([0.0, 0.0], [1, 1], [1, 0], "output_tokens: must be >= 1 \\(index 1\\)"),
        ([[0.0]], [1], [1], "arrival_s: expected a 1-D array"),
    ],
)
def test_it_rejects_malformed_arrays_naming_the_field(
    arrival: list[float], prompt: list[int], output: list[int], field: str
) -> None:
    with pytest.raises(WorkloadError, match=field):
        Workload(np.array(arrival), np.array(prompt), np.array(output))


def test_it_rejects_a_zero_concurrency_cap() -> None:
    with pytest.raises(WorkloadError, match="max_concurrency"):
        Workload(np.zeros(1), np.ones(1, np.int64), np.ones(1, np.int64), max_concurrency=0)


def test_it_generates_poisson_arrivals_at_the_asked_rate() -> None:
    arrival = poisson_arrivals_s(np.random.default_rng(1), num_requests=200_001, rate_rps=50.0)
    assert arrival[0] == 0.0
    gaps = np.diff(arrival)
    assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.01)
    # exponential gaps: coefficient of variation 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)


def test_it_makes_gamma_arrivals_burstier_below_one() -> None:
    rng = np.random.default_rng(2)
    gaps = np.diff(gamma_arrivals_s(rng, num_requests=200_001, rate_rps=10.0, burstiness=0.25))
    assert gaps.mean() == pytest.approx(0.1, rel=0.02)
    # gamma with shape k: CV = 1/sqrt(k) = 2
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.03)


def test_it_sends_everything_at_once_at_infinite_rate() -> None:
    rng = np.random.default_rng(0)
    assert gamma_arrivals_s(rng, num_requests=3, rate_rps=math.inf).tolist() == [0.0, 0.0, 0.0]


def test_it_is_reproducible_from_the_seed() -> None:
    def make(seed: int) -> Workload:
        return synthetic_workload(
            np.random.default_rng(seed),
            num_requests=100,
            rate_rps=4.0,
            prompt_tokens=100,
            output_tokens=50,
            range_ratio=0.5,
        )

    a, b, c = make(7), make(7), make(8)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert np.array_equal(a.output_tokens, b.output_tokens)
    assert not np.array_equal(a.arrival_s, c.arrival_s)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_rps": 0.0}, "rate_rps"),
        ({"burstiness": 0.0}, "burstiness"),
        ({"range_ratio": 1.0}, "range_ratio"),
        ({"output_tokens": 0}, "output_tokens"),
        ({"num_requests": -1}, "num_requests"),
    ],
)
def test_it_rejects_bad_generator_arguments(kwargs: dict[str, float], field: str) -> None:
    arguments: dict[str, float] = {
        "num_requests": 10,
        "rate_rps": 1.0,
        "prompt_tokens": 10,
        "output_tokens": 10,
        "burstiness": 1.0,
        "range_ratio": 0.0,
    } | kwargs
    with pytest.raises(WorkloadError, match=field):
        synthetic_workload(np.random.default_rng(0), **arguments)  # type: ignore[arg-type]


def test_it_draws_uniform_lengths_within_the_range() -> None:
    lengths = uniform_lengths(
        np.random.default_rng(3), num_requests=10_000, mean_tokens=100, range_ratio=0.2
    )
    assert lengths.min() == 80
    assert lengths.max() == 120


def test_it_describes_a_closed_loop() -> None:
    workload = closed_loop_workload(
        num_requests=64, concurrency=8, prompt_tokens=32, output_tokens=128
    )
    assert workload.max_concurrency == 8
    assert workload.arrival_s.max() == 0.0
    assert set(workload.output_tokens.tolist()) == {128}


def test_it_loads_the_azure_conversation_trace() -> None:
    workload = load_azure_trace(CONV)
    assert workload.num_requests == 19_366
    assert workload.arrival_s[0] == 0.0
    # first two rows: 18:15:46.6805900 (374, 44) and 18:15:50.9951690 (396, 109)
    assert workload.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert workload.prompt_tokens[:2].tolist() == [374, 396]
    assert workload.output_tokens[:2].tolist() == [44, 109]
    assert workload.duration_s == pytest.approx(58 * 60 + 21.721937, abs=1e-3)
    assert int(workload.prompt_tokens.sum()) == 22_361_870
    assert load_azure_trace(CODE).num_requests == 8_819


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2023-11-16 18:15:47.0,12x,5", "line 3, column ContextTokens: not an integer"),
        ("2023-11-16 18:15:47.0,12,-5", "line 3, column GeneratedTokens: must be >= 0"),
        ("2023-11-16 18:15:47.0,12,0", "line 3, column GeneratedTokens: must be >= 1"),
        ("2023-11-16 18:15:47.0,0,5", "line 3, column ContextTokens: must be >= 1"),
        ("yesterday,12,5", "line 3, column TIMESTAMP: not a timestamp"),
        ("2023-11-16 18:15:47.0,12.5,5", "line 3, column ContextTokens: not an integer"),
        ("2023-11-16 18:15:47.0,,5", "line 3, column ContextTokens"),
    ],
)
def test_it_names_the_line_and_column_of_a_bad_trace_row(
    tmp_path: Path, row: str, message: str
) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(
        b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        b"2023-11-16 18:15:46.6805900,374,44\r\n" + row.encode()
    )
    with pytest.raises(WorkloadError, match=message):
        load_azure_trace(path)


def test_it_names_a_missing_column_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n")
    with pytest.raises(WorkloadError, match=r"missing column\(s\) \['GeneratedTokens'\]"):
        load_azure_trace(path)
    with pytest.raises(WorkloadError, match="no such file"):
        load_azure_trace(tmp_path / "absent.csv")


def test_it_sorts_an_unsorted_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:00:02,20,2\n2023-11-16 18:00:00,10,1\n"
    )
    workload = load_azure_trace(path)
    assert workload.arrival_s.tolist() == [0.0, 2.0]
    assert workload.prompt_tokens.tolist() == [10, 20]


def test_it_resamples_a_trace_to_a_million_requests_with_its_shape() -> None:
    conv = load_azure_trace(CONV)
    big = resample_workload(conv, np.random.default_rng(5), num_requests=1_000_000)
    assert big.num_requests == 1_000_000
    assert big.prompt_tokens.mean() == pytest.approx(conv.prompt_tokens.mean(), rel=0.01)
    assert big.output_tokens.mean() == pytest.approx(conv.output_tokens.mean(), rel=0.01)
    assert big.mean_rate_rps == pytest.approx(conv.mean_rate_rps, rel=0.01)
    faster = resample_workload(conv, np.random.default_rng(5), num_requests=1000, rate_rps=40.0)
    assert faster.mean_rate_rps == pytest.approx(40.0)


def test_it_selects_requests_for_a_router() -> None:
    workload = Workload(np.array([0.0, 1.0, 2.0, 3.0]), np.arange(1, 5), np.arange(1, 5))
    even = workload.select(np.arange(4) % 2 == 0)
    assert even.arrival_s.tolist() == [0.0, 2.0]
    assert workload.select([3, 1]).prompt_tokens.tolist() == [2, 4]
    with pytest.raises(WorkloadError, match="mask of 2 for 4"):
        workload.select(np.array([True, False]))


def test_it_time_scales_relative_to_the_first_arrival() -> None:
    workload = Workload(np.array([2.0, 3.0, 6.0]), np.ones(3, np.int64), np.ones(3, np.int64))
    assert workload.time_scaled(0.5).arrival_s.tolist() == [0.0, 0.5, 2.0]
    assert workload.with_rate(0.25).arrival_s.tolist() == [0.0, 2.0, 8.0]
    assert workload.with_rate(math.inf).arrival_s.tolist() == [0.0, 0.0, 0.0]


@settings(max_examples=50, deadline=None)
@given(
    rate=st.floats(min_value=0.01, max_value=1e4),
    burstiness=st.floats(min_value=0.05, max_value=20.0),
    n=st.integers(min_value=0, max_value=500),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_it_always_generates_a_valid_workload(
    rate: float, burstiness: float, n: int, seed: int
) -> None:
    workload = synthetic_workload(
        np.random.default_rng(seed),
        num_requests=n,
        rate_rps=rate,
        prompt_tokens=10,
        output_tokens=3,
        burstiness=burstiness,
        range_ratio=0.5,
    )
    assert workload.num_requests == n
    assert np.all(np.diff(workload.arrival_s) >= 0)
    assert np.all(workload.output_tokens >= 1)


def hashed(rows: list[list[int]], prompts: list[int], block_tokens: int = 4) -> Workload:
    n = len(prompts)
    return Workload(
        np.arange(n, dtype=np.float64),
        np.array(prompts),
        np.ones(n, np.int64),
        prefix=PrefixBlocks.from_lists(block_tokens, rows),
    )


def test_it_keeps_block_hashes_through_select_head_and_resampling() -> None:
    workload = hashed([[1, 2, 3], [1], [7, 8]], [10, 3, 8])
    assert workload.prefix is not None
    assert workload.prefix.offsets.tolist() == [0, 3, 4, 6]
    picked = workload.select(np.array([False, True, True])).prefix
    assert picked is not None
    assert [picked.row(i).tolist() for i in range(2)] == [[1], [7, 8]]
    first = workload.head(2).prefix
    assert first is not None
    assert first.hashes.tolist() == [1, 2, 3, 1]
    assert workload.time_scaled(2.0).prefix is workload.prefix
    assert workload.with_max_concurrency(2).prefix is workload.prefix
    resampled = resample_workload(workload, np.random.default_rng(0), num_requests=50)
    assert resampled.prefix is not None
    assert resampled.prefix.blocks_per_request.tolist() == [
        {10: 3, 3: 1, 8: 2}[int(prompt)] for prompt in resampled.prompt_tokens
    ]


def test_a_row_drawn_again_keeps_only_the_blocks_other_rows_share() -> None:
    # hash 1 is held by rows 0 and 1 (a shared system prompt); 2, 3, 7, 8 by one row each
    workload = hashed([[1, 2, 3], [1], [7, 8]], [10, 3, 8])
    assert workload.prefix is not None
    drawn = workload.prefix.bootstrap(np.array([2, 0, 2, 0, 1, 1]))
    assert [drawn.row(i).tolist() for i in range(6)] == [
        [7, 8],  # first draws keep every hash
        [1, 2, 3],
        [9, 10],  # drawn again: its own blocks are new text
        [1, 11, 12],  # the shared block stays
        [1],
        [1],
    ]


def test_resampling_does_not_invent_reuse_from_repeated_draws() -> None:
    rows = [[100 + i, 1000 + i] for i in range(20)]  # no block shared between prompts
    workload = hashed(rows, [8] * 20)
    big = resample_workload(workload, np.random.default_rng(3), num_requests=400)
    assert big.prefix is not None
    assert workload.prefix is not None
    assert reused_prompt_share(big.prefix, big.prompt_tokens) == 0.0
    # what plain copies of the rows would have claimed: every draw after the first cached
    copies = workload.prefix.take(np.arange(400) % 20)
    assert reused_prompt_share(copies, big.prompt_tokens) == pytest.approx(380 / 400)


@pytest.mark.parametrize(
    ("rows", "prompts", "block_tokens", "message"),
    [
        ([[1, 2, 3, 4]], [10], 4, "prefix.hashes: request 0 has 4 blocks of 4 tokens for a "),
        ([[1], [2]], [4], 4, "prefix: block hashes for 2 requests, workload has 1"),
        ([[1]], [4], 0, "prefix.block_tokens: must be an integer >= 1"),
    ],
)
def test_it_rejects_block_hashes_that_do_not_fit_naming_the_row(
    rows: list[list[int]], prompts: list[int], block_tokens: int, message: str
) -> None:
    with pytest.raises(WorkloadError, match=message):
        hashed(rows, prompts, block_tokens)


def test_it_rejects_ragged_offsets_that_do_not_match_the_hashes() -> None:
    with pytest.raises(WorkloadError, match=r"prefix\.offsets: decreases at request 1"):
        PrefixBlocks(4, np.array([1, 2]), np.array([0, 2, 1, 2]))
    with pytest.raises(WorkloadError, match=r"prefix\.offsets: ends at 1, expected the number"):
        PrefixBlocks(4, np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(WorkloadError, match=r"prefix\.offsets: must start with 0"):
        PrefixBlocks(4, np.array([1, 2]), np.array([1, 2]))


def test_it_reads_a_mooncake_trace_with_its_block_hashes(tmp_path: Path) -> None:
    lines = [
        '{"timestamp": 1000, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]}',
        "",
        '{"timestamp": 2500, "input_length": 600, "output_length": 1, "hash_ids": [7, 20]}',
    ]
    plain = tmp_path / "trace.jsonl"
    plain.write_text("\n".join(lines) + "\n")
    packed = tmp_path / "trace.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        workload = load_mooncake_trace(path)
        assert workload.name == "trace"
        assert workload.arrival_s.tolist() == [0.0, 1.5]
        assert workload.prompt_tokens.tolist() == [1100, 600]
        assert workload.output_tokens.tolist() == [5, 1]
        assert workload.prefix is not None
        assert workload.prefix.block_tokens == 512
        assert [workload.prefix.row(i).tolist() for i in range(2)] == [[7, 8, 9], [7, 20]]
        # the second prompt's first 512-token block is the first prompt's: 512 of 1,700
        assert reused_prompt_share(workload.prefix, workload.prompt_tokens) == 512 / 1700


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"timestamp": 0, "input_length": 0, "output_length": 1}',
         "t.jsonl line 1, input_length: expected an integer >= 1, got 0"),
        ('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["a"]}',
         "t.jsonl line 1, hash_ids: expected a list of integers"),
        ("[1]", "t.jsonl line 1: expected an object"),
        ('{"timestamp": 9, "input_length": 5, "output_length": 1}\n'
         '{"timestamp": 3, "input_length": 5, "output_length": 1}',
         "t.jsonl line 2, timestamp: earlier than the line before"),
    ],
)  # fmt: skip
def test_it_names_the_line_and_field_of_a_bad_mooncake_row(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(WorkloadError) as caught:
        load_mooncake_trace(path)
    assert str(caught.value) == message


def test_the_repository_mooncake_trace_is_the_release() -> None:
    trace = load_mooncake_trace(
        Path(__file__).resolve().parents[2]
        / "probes/data/traces/mooncake_conversation_trace.jsonl.gz"
    )
    assert trace.num_requests == 12_031
    assert int(trace.prompt_tokens.sum()) == 144_793_823
    assert trace.prefix is not None
    assert reused_prompt_share(trace.prefix, trace.prompt_tokens) == pytest.approx(0.3734, abs=1e-4)
