"""Prefix cache pre-pass: cached prompt tokens per request, hand-computed LRU traces."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.engine.prefix_cache import (
    cache_hits,
    prefix_blocks_from_rows,
    prefix_cached_tokens,
    prefix_reuse_assumption,
    reused_prompt_share,
)
from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError


def cached(
    rows: list[list[int]], prompts: list[int], *, capacity_tokens: int, kv_block_tokens: int = 1
) -> list[int]:
    return prefix_cached_tokens(
        PrefixBlocks.from_lists(4, rows),
        np.array(prompts, dtype=np.int64),
        capacity_tokens=capacity_tokens,
        kv_block_tokens=kv_block_tokens,
    ).tolist()


def test_it_reuses_a_shared_two_block_prefix() -> None:
    # 4-token hash blocks, 2-token KV blocks. A: 10 tokens, blocks 1 2 (full) and 3 (partial):
    # nothing before it. B: 9 tokens starting with 1 2: 8 tokens cached. C: exactly blocks 1 2
    # (8 tokens): vLLM recomputes the last token, 7 tokens, rounded down to the KV block: 6.
    rows = [[1, 2, 3], [1, 2, 7], [1, 2]]
    assert cached(rows, [10, 9, 8], capacity_tokens=1000, kv_block_tokens=2) == [0, 8, 6]


def test_it_matches_only_the_leading_run_of_blocks() -> None:
    # the second request shares block 2 but not block 1: a prefix hash chain cannot match
    # after a miss
    assert cached([[1, 2], [9, 2]], [8, 8], capacity_tokens=1000) == [0, 0]


def test_it_evicts_the_least_recently_used_block_at_small_capacity() -> None:
    # capacity 2 blocks (8 tokens): the second prompt evicts both blocks of the first, the
    # third brings 1 2 back, the fourth keeps 1 and adds 9 (evicting 2), so the fifth hits 1
    rows = [[1, 2], [5, 6], [1, 2], [1, 9], [1, 2]]
    assert cached(rows, [8] * 5, capacity_tokens=8) == [0, 0, 0, 4, 4]


def test_it_evicts_a_prompts_tail_before_its_head() -> None:
    # capacity 3 blocks: 5 6 evict 2 (the first prompt's tail) and keep 1 (its head)
    assert cached([[1, 2], [5, 6], [1, 2]], [8] * 3, capacity_tokens=12) == [0, 0, 4]


def test_it_caches_nothing_without_kv_space() -> None:
    assert cached([[1, 2], [1, 2]], [8, 8], capacity_tokens=3) == [0, 0]


def test_it_measures_the_share_of_prompt_tokens_in_blocks_seen_before() -> None:
    # B reuses 8 of 9 tokens, C all 8 (no last-token rule in the measured share): 16 / 27
    prefix = PrefixBlocks.from_lists(4, [[1, 2, 3], [1, 2, 7], [1, 2]])
    share = reused_prompt_share(prefix, np.array([10, 9, 8]))
    assert share == pytest.approx(16 / 27)


def test_it_rejects_prompts_of_another_length() -> None:
    with pytest.raises(WorkloadError, match="block hashes for 1 requests, prompts for 2"):
        cached([[1]], [4, 4], capacity_tokens=100)


def test_it_states_the_reuse_it_assumes_or_that_it_is_unknown() -> None:
    plain = Workload(np.zeros(3), np.array([10, 9, 8]), np.ones(3, np.int64))
    assert prefix_reuse_assumption(plain) == (
        "prefix reuse unknown: the request sample carries no prompt block hashes, so "
        "prefill is charged for every prompt token (as with prefix caching off)"
    )
    hashed = Workload(
        plain.arrival_s,
        plain.prompt_tokens,
        plain.output_tokens,
        prefix=PrefixBlocks.from_lists(4, [[1, 2, 3], [1, 2, 7], [1, 2]]),
    )
    assert prefix_reuse_assumption(hashed).startswith(
        "prefix reuse 59% of the sample's prompt tokens (block hashes, 4-token blocks, no cache "
        "limit); with prefix caching on"
    )


def test_it_builds_ragged_blocks_from_records_of_the_commonest_block_size() -> None:
    blocks, kept = prefix_blocks_from_rows([[1, 2], None, [3], [4, 5]], [512, None, 256, 512])
    assert blocks is not None
    assert (blocks.block_tokens, kept) == (512, 2)
    assert [blocks.row(i).tolist() for i in range(4)] == [[1, 2], [], [], [4, 5]]
    assert prefix_blocks_from_rows([None, None], [None, None]) == (None, 0)


def tiered(
    rows: list[list[int]], prompts: list[int], *, capacity_tokens: int, host_capacity_tokens: int
) -> tuple[list[int], list[int]]:
    hits = cache_hits(
        PrefixBlocks.from_lists(4, rows),
        np.array(prompts, dtype=np.int64),
        capacity_tokens=capacity_tokens,
        kv_block_tokens=1,
        host_capacity_tokens=host_capacity_tokens,
    )
    return hits.cached_tokens.tolist(), hits.host_tokens.tolist()


def test_it_finds_blocks_the_gpu_evicted_in_the_host_tier() -> None:
    # GPU tier 2 blocks, host tier 2. 5 6 push 2 then 1 to the host (host: 1 2). The third
    # request loads 1 2 back (8 of its 9 tokens, all from host), pushing 6 then 5 out (host:
    # 5 6); the fourth loads 5 6 back, pushing 2 then 1 out (host: 1 2); the fifth finds 1
    # in the host tier and misses 9: 4 tokens, from host.
    rows = [[1, 2], [5, 6], [1, 2], [5, 6], [1, 9]]
    assert tiered(rows, [9] * 5, capacity_tokens=8, host_capacity_tokens=8) == (
        [0, 0, 8, 8, 4],
        [0, 0, 8, 8, 4],
    )
    # without the host tier nothing survives (the LRU trace of the test above)
    assert tiered(rows, [9] * 5, capacity_tokens=8, host_capacity_tokens=0) == (
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    )


def test_it_counts_host_tokens_only_up_to_the_hit() -> None:
    # an 8-token prompt recomputes its last token: 7 cached, all of them from the host tier
    # (4 of block 1, 3 of block 2); the host tier holds 1 block: only 1 survives (2 dropped)
    rows = [[1, 2], [5, 6], [1, 2]]
    assert tiered(rows, [8, 8, 8], capacity_tokens=8, host_capacity_tokens=8) == (
        [0, 0, 7],
        [0, 0, 7],
    )
    assert tiered(rows, [8, 8, 8], capacity_tokens=8, host_capacity_tokens=4) == (
        [0, 0, 4],
        [0, 0, 4],
    )


def test_it_mixes_tiers_in_one_leading_run() -> None:
    # GPU 3 blocks, host 1: the second request keeps 1 on the GPU and pushes 2 to the host
    # (touching 6, 5: 5 6 1 on the GPU); the third finds 1 on the GPU and 2 in the host tier
    rows = [[1, 2], [5, 6], [1, 2]]
    assert tiered(rows, [9, 9, 9], capacity_tokens=12, host_capacity_tokens=4) == (
        [0, 0, 8],
        [0, 0, 4],
    )
