"""vLLM's automatic prefix caching on one replica, as cached prompt tokens per request.

vLLM keeps the KV blocks of finished and running requests, keyed by a hash of the whole
prefix up to each block's end, and evicts free blocks least recently used first. A new
request reuses the longest run of its leading *full* blocks found in the cache, and always
recomputes at least its last prompt token (it needs that token's logits), so its cached
tokens are at most prompt - 1, rounded down to the KV block size.

`prefix_cached_tokens` is a pre-pass over the requests in arrival order with an LRU of
`capacity_tokens` (the replica's KV capacity: the memory plan's blocks times their size), in
units of the trace's hash blocks. Each request first looks up its leading blocks, then
touches all its full blocks, the last first, so that its first block is the most recently
used and its tail is evicted first (vLLM frees a finished request's blocks in reverse order
for the same reason). The simulator then charges prefill compute only for the uncached
tokens (attention over the cached context still reads its KV).

What this approximates (each makes the hit rate an upper bound of vLLM's):
- the cache gets the whole KV space: in vLLM the blocks of running sequences (prompts and
  generated tokens) compete with cached blocks for the same memory, so under load fewer
  cached blocks survive;
- a request's blocks count as cached from its arrival on: a request arriving while an
  earlier one with the same prefix is still waiting or prefilling hits here, in vLLM only
  blocks already computed can be hit;
- one order, arrival order: requests preempted and recomputed, and requests rejected as too
  long, still touch the cache once, at arrival (a preempted request resumes with its prompt's
  cached tokens only, although vLLM may still hold its generated tokens' blocks too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

IntArray = npt.NDArray[np.int64]


@njit(cache=True)
def _lru_pass(  # type: ignore[no-untyped-def]
    ids, offsets, prompt_tokens, block_tokens, capacity_blocks, kv_block_tokens, keep_last
):
    """Cached tokens per request; ids are dense (0..m-1) block ids, see the module docstring.

    `keep_last` (0 or 1): prompt tokens that are always recomputed. The LRU is a doubly
    linked list over block ids with a sentinel at index m (next: towards the least recently
    used end).
    """
    n = prompt_tokens.shape[0]
    m = 0
    for i in range(ids.shape[0]):
        m = max(m, ids[i] + 1)
    head = m  # sentinel: nxt[head] is the most recent, prv[head] the least recent
    nxt = np.full(m + 1, head, np.int64)
    prv = np.full(m + 1, head, np.int64)
    cached = np.zeros(m, np.bool_)
    size = 0
    out = np.zeros(n, np.int64)
    for r in range(n):
        start = offsets[r]
        full = min(offsets[r + 1] - start, prompt_tokens[r] // block_tokens)
        k = 0
        while k < full and cached[ids[start + k]]:
            k += 1
        hit = min(k * block_tokens, prompt_tokens[r] - keep_last)
        out[r] = (hit // kv_block_tokens) * kv_block_tokens
        if capacity_blocks <= 0:
            continue
        for j in range(full - 1, -1, -1):
            b = ids[start + j]
            if cached[b]:
                # unlink
                nxt[prv[b]] = nxt[b]
                prv[nxt[b]] = prv[b]
            else:
                cached[b] = True
                size += 1
            # link at the most recent end
            nxt[b] = nxt[head]
            prv[b] = head
            prv[nxt[head]] = b
            nxt[head] = b
            if size > capacity_blocks:
                old = prv[head]
                prv[head] = prv[old]
                nxt[prv[old]] = head
                cached[old] = False
                size -= 1
    return out


def prefix_cached_tokens(
    prefix: PrefixBlocks,
    prompt_tokens: IntArray,
    *,
    capacity_tokens: int,
    kv_block_tokens: int,
) -> IntArray:
    """Prompt tokens each request finds in the replica's prefix cache (see the module docstring).

    `capacity_tokens`: the KV space of the replica; `kv_block_tokens`: vLLM's block size
    (`--block-size`), the granularity of a hit.
    """
    if prefix.num_requests != prompt_tokens.shape[0]:
        raise WorkloadError(
            f"prefix: block hashes for {prefix.num_requests} requests, prompts for "
            f"{prompt_tokens.shape[0]}"
        )
    if kv_block_tokens < 1:
        raise WorkloadError(f"kv_block_tokens: must be >= 1, got {kv_block_tokens}")
    out: IntArray = _lru_pass(
        prefix.dense_ids,
        prefix.offsets,
        np.asarray(prompt_tokens, dtype=np.int64),
        prefix.block_tokens,
        max(capacity_tokens, 0) // prefix.block_tokens,
        kv_block_tokens,
        1,
    )
    return out


def reused_prompt_share(prefix: PrefixBlocks, prompt_tokens: IntArray) -> float:
    """Share of prompt tokens in full blocks seen earlier in the trace (an unbounded cache).

    The measured reuse of a trace, independent of any replica: the upper bound of what a
    prefix cache could skip. 0 for an empty trace.
    """
    total = float(np.asarray(prompt_tokens).sum())
    if total <= 0:
        return 0.0
    cached = _lru_pass(
        prefix.dense_ids,
        prefix.offsets,
        np.asarray(prompt_tokens, dtype=np.int64),
        prefix.block_tokens,
        int(prefix.hashes.shape[0]) + 1,
        1,
        0,
    )
    return float(cached.sum()) / total


def prefix_blocks_from_rows(
    hashes: Sequence[Sequence[int] | None], block_tokens: Sequence[int | None]
) -> tuple[PrefixBlocks | None, int]:
    """Ragged block hashes from one hash list (or None) and block size per request.

    The block size is the most common one among the rows with hashes (ties: the smallest);
    rows without hashes or with another block size get no blocks (no reuse known). Returns
    (None, 0) when no row has hashes, else the blocks and how many rows kept theirs.
    """
    if len(hashes) != len(block_tokens):
        raise WorkloadError(f"prefix: {len(hashes)} hash lists for {len(block_tokens)} block sizes")
    sizes = Counter(
        size for row, size in zip(hashes, block_tokens, strict=True) if row is not None and size
    )
    if not sizes:
        return None, 0
    size = min(sizes, key=lambda s: (-sizes[s], s))
    rows = [
        list(row) if row is not None and tokens == size else []
        for row, tokens in zip(hashes, block_tokens, strict=True)
    ]
    return PrefixBlocks.from_lists(size, rows), sizes[size]


def prefix_reuse_assumption(sample: Workload) -> str:
    """What an assessment assumes about prefix reuse for this request sample, in words."""
    if sample.prefix is None:
        return (
            "prefix reuse unknown: the request sample carries no prompt block hashes, so "
            "prefill is charged for every prompt token (as with prefix caching off)"
        )
    share = reused_prompt_share(sample.prefix, sample.prompt_tokens)
    return (
        f"prefix reuse {share:.0%} of the sample's prompt tokens (block hashes, "
        f"{sample.prefix.block_tokens}-token blocks, no cache limit); with prefix caching on "
        "(vLLM's default) each replica keeps an LRU of its KV blocks and prefill is charged "
        "only for the tokens it does not find there"
    )
