"""Assumed prefix reuse: a shared system prompt of about r x each prompt, in whole blocks."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.engine.prefix_cache import reused_prompt_share
from advisor.engine.prefix_reuse import REUSE_SHARES, synthetic_prefix, with_reuse
from advisor.engine.workload import Workload, WorkloadError

PROMPTS = np.array([100, 40, 33], dtype=np.int64)


def rows(prompts: np.ndarray, share: float, block_tokens: int = 16) -> list[list[int]]:
    prefix = synthetic_prefix(prompts, share, block_tokens)
    return [prefix.row(i).tolist() for i in range(prefix.num_requests)]


def test_it_shares_the_leading_blocks_of_one_system_prompt() -> None:
    # full blocks 6, 2, 2; shared floor(0.5 x prompt / 16) = 3, 1, 1; own blocks numbered
    # from 3 (after the longest shared part) in request order
    assert rows(PROMPTS, 0.5) == [[0, 1, 2, 3, 4, 5], [0, 6], [0, 7]]


def test_it_gives_every_block_its_own_hash_at_zero_reuse() -> None:
    assert rows(PROMPTS, 0.0) == [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]]
    prefix = synthetic_prefix(PROMPTS, 0.0, 16)
    assert reused_prompt_share(prefix, PROMPTS) == 0.0


def test_it_hashes_full_blocks_only() -> None:
    # a 10-token prompt has no full block; a 64-token one shares all 4 at reuse 1
    assert rows(np.array([10, 64]), 1.0) == [[], [0, 1, 2, 3]]


def test_a_cache_finds_a_little_less_than_the_share_asked() -> None:
    # requests 2 and 3 find block 0 (16 tokens each); request 1 computed it: 32 of 173 tokens
    assert reused_prompt_share(synthetic_prefix(PROMPTS, 0.5, 16), PROMPTS) == 32 / 173
    # many equal prompts: all but the first find their shared 3 of 6 blocks (96 of 100 tokens)
    many = np.full(100, 100, dtype=np.int64)
    share = reused_prompt_share(synthetic_prefix(many, 0.6, 16), many)
    assert share == pytest.approx(99 * 48 / 10_000)  # floor(0.6 x 100 / 16) = 3 blocks, 48 tokens


def test_it_counts_a_share_on_a_block_boundary_as_that_many_blocks() -> None:
    # 0.3 x 160 / 16 = 3 exactly, though 0.3 x 160 is 47.99999... in floating point
    assert rows(np.array([160]), 0.3) == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert synthetic_prefix(np.array([160, 160]), 0.3, 16).row(1).tolist() == [
        0, 1, 2, 10, 11, 12, 13, 14, 15, 16
    ]  # fmt: skip


def test_it_keeps_the_sample_and_adds_the_hashes() -> None:
    sample = Workload(np.array([0.0, 1.0, 2.5]), PROMPTS, np.array([5, 6, 7]), name="s")
    reused = with_reuse(sample, 0.5, 16)
    assert reused.arrival_s.tolist() == [0.0, 1.0, 2.5]
    assert reused.prompt_tokens.tolist() == [100, 40, 33]
    assert reused.output_tokens.tolist() == [5, 6, 7]
    assert reused.name == "s"
    assert reused.prefix is not None
    assert reused.prefix.block_tokens == 16
    assert reused.prefix.offsets.tolist() == [0, 6, 8, 10]


@pytest.mark.parametrize(
    ("share", "block_tokens", "message"),
    [
        (-0.1, 16, "reuse_share: must be in [0, 1], got -0.1"),
        (1.5, 16, "reuse_share: must be in [0, 1], got 1.5"),
        (0.3, 0, "block_tokens: must be an integer >= 1, got 0"),
    ],
)
def test_it_refuses_a_share_or_block_size_out_of_range(
    share: float, block_tokens: int, message: str
) -> None:
    with pytest.raises(WorkloadError) as caught:
        synthetic_prefix(PROMPTS, share, block_tokens)
    assert str(caught.value) == message


def test_it_assumes_the_issues_three_shares() -> None:
    assert REUSE_SHARES == (0.0, 0.3, 0.6)
