"""vLLM's automatic prefix caching on each replica, as cached prompt tokens per request.

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

Host-memory KV offload (vLLM's `--kv-offloading-size`, LMCache's CPU tier) adds a second
LRU per replica of `host_capacity_tokens`: a block evicted from the GPU tier moves to the
front of the host tier (the host tier's least recent block is dropped when it is full), and
a request's leading run may mix both tiers. A hit in the host tier counts as cached; the
block moves back to the GPU tier when the request touches it (the tiers are exclusive), and
`CacheHits.host_tokens` says how many cached tokens were loaded over the host link, which
`advisor.engine.sim` charges. vLLM's CPU tier may instead keep a copy (inclusive tiers):
that holds fewer distinct blocks in the same memory, so the exclusive model is an upper bound.

Across replicas (`cache_hits(..., num_replicas=n)`) each replica keeps its own tiers and
the same pass also decides where each request goes: round robin (request i to replica
i mod n), or prefix-aware (`advisor.engine.routing`): the replica whose tiers hold the
longest leading run of the request's blocks, ties to the one with the fewest outstanding
requests, then the lowest index, skipping replicas with more than `max_imbalance_requests`
outstanding requests above the least loaded one.

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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

IntArray = npt.NDArray[np.int64]


ROUND_ROBIN = 0  # `_cache_pass` policies (see `advisor.engine.routing`)
PREFIX_AWARE = 1
_ABSENT, _DEVICE, _HOST = 0, 1, 2


@njit(cache=True)
def _unlink(nxt, prv, r, b):  # type: ignore[no-untyped-def]
    nxt[r, prv[r, b]] = nxt[r, b]
    prv[r, nxt[r, b]] = prv[r, b]


@njit(cache=True)
def _link_front(nxt, prv, r, head, b):  # type: ignore[no-untyped-def]
    nxt[r, b] = nxt[r, head]
    prv[r, b] = head
    prv[r, nxt[r, head]] = b
    nxt[r, head] = b


@njit(cache=True)
def _heap_push(keys, tags, n, key, tag):  # type: ignore[no-untyped-def]
    i = n
    keys[i] = key
    tags[i] = tag
    while i > 0:
        up = (i - 1) // 2
        if keys[up] <= keys[i]:
            break
        keys[up], keys[i] = keys[i], keys[up]
        tags[up], tags[i] = tags[i], tags[up]
        i = up
    return n + 1


@njit(cache=True)
def _heap_pop(keys, tags, n):  # type: ignore[no-untyped-def]
    n -= 1
    keys[0] = keys[n]
    tags[0] = tags[n]
    i = 0
    while True:
        small = i
        for c in (2 * i + 1, 2 * i + 2):
            if c < n and keys[c] < keys[small]:
                small = c
        if small == i:
            break
        keys[small], keys[i] = keys[i], keys[small]
        tags[small], tags[i] = tags[i], tags[small]
        i = small
    return n


@njit(cache=True)
def _cache_pass(  # type: ignore[no-untyped-def]
    ids, offsets, prompt_tokens, block_tokens, device_blocks, host_blocks, kv_block_tokens,
    keep_last, num_replicas, policy, arrival_s, hold_s, max_imbalance,
):  # fmt: skip
    """Replica, cached tokens and the host tier's share of them per request (module docstring).

    `ids` are dense (0..m-1) block ids; `keep_last` (0 or 1): prompt tokens always recomputed.
    Each replica keeps two LRU lists over block ids in one pair of link arrays (a block is in
    at most one tier of a replica): sentinel m heads the device tier, m + 1 the host tier
    (next: towards the least recently used end). Memory: replicas x (m + 2) x 16 bytes.
    Outstanding requests per replica (for prefix-aware routing) count a request from its
    arrival until arrival + `hold_s`, tracked in one min-heap of end times.
    """
    n = prompt_tokens.shape[0]
    m = 0
    for i in range(ids.shape[0]):
        m = max(m, ids[i] + 1)
    dev = m
    hst = m + 1
    nxt = np.empty((num_replicas, m + 2), np.int64)
    prv = np.empty((num_replicas, m + 2), np.int64)
    for q in range(num_replicas):
        nxt[q, dev] = dev
        prv[q, dev] = dev
        nxt[q, hst] = hst
        prv[q, hst] = hst
    where = np.zeros((num_replicas, m), np.int8)
    dev_size = np.zeros(num_replicas, np.int64)
    host_size = np.zeros(num_replicas, np.int64)
    load = np.zeros(num_replicas, np.int64)
    ends = np.empty(n + 1)
    end_of = np.empty(n + 1, np.int64)
    heap = 0
    out_replica = np.zeros(n, np.int64)
    out_cached = np.zeros(n, np.int64)
    out_host = np.zeros(n, np.int64)
    for r in range(n):
        start = offsets[r]
        full = min(offsets[r + 1] - start, prompt_tokens[r] // block_tokens)
        if policy == ROUND_ROBIN:
            q = r % num_replicas
        else:
            while heap > 0 and ends[0] <= arrival_s[r]:
                load[end_of[0]] -= 1
                heap = _heap_pop(ends, end_of, heap)
            least = load.min()
            q = -1
            best = -1
            for c in range(num_replicas):
                if load[c] > least + max_imbalance:
                    continue  # the imbalance guard
                k = 0
                while k < full and where[c, ids[start + k]] != _ABSENT:
                    k += 1
                if k > best or (k == best and load[c] < load[q]):
                    q = c
                    best = k
            load[q] += 1
            heap = _heap_push(ends, end_of, heap, arrival_s[r] + hold_s[r], q)
        out_replica[r] = q
        if policy == ROUND_ROBIN:
            k = 0
            while k < full and where[q, ids[start + k]] != _ABSENT:
                k += 1
        else:
            k = best  # the chosen replica's cached run, walked above
        hit = min(k * block_tokens, prompt_tokens[r] - keep_last)
        hit = (hit // kv_block_tokens) * kv_block_tokens
        out_cached[r] = hit
        for j in range(k):
            if where[q, ids[start + j]] == _HOST:
                out_host[r] += max(0, min(block_tokens, hit - j * block_tokens))
        if device_blocks <= 0:
            continue
        for j in range(full - 1, -1, -1):
            b = ids[start + j]
            if where[q, b] == _DEVICE:
                _unlink(nxt, prv, q, b)
            else:
                if where[q, b] == _HOST:
                    _unlink(nxt, prv, q, b)  # loaded back: it leaves the host tier
                    host_size[q] -= 1
                where[q, b] = _DEVICE
                dev_size[q] += 1
            _link_front(nxt, prv, q, dev, b)
            if dev_size[q] > device_blocks:
                old = prv[q, dev]
                _unlink(nxt, prv, q, old)
                dev_size[q] -= 1
                where[q, old] = _ABSENT
                if host_blocks > 0:  # offloaded: it joins the host tier
                    where[q, old] = _HOST
                    host_size[q] += 1
                    _link_front(nxt, prv, q, hst, old)
                    if host_size[q] > host_blocks:
                        gone = prv[q, hst]
                        _unlink(nxt, prv, q, gone)
                        host_size[q] -= 1
                        where[q, gone] = _ABSENT
    return out_replica, out_cached, out_host


@dataclass(frozen=True, eq=False)
class CacheHits:
    """Per request: its replica, cached prompt tokens, and how many of them came from host."""

    replica: IntArray
    cached_tokens: IntArray
    host_tokens: IntArray  # part of `cached_tokens` found in the host (offload) tier


def cache_hits(
    prefix: PrefixBlocks,
    prompt_tokens: IntArray,
    *,
    capacity_tokens: int,
    kv_block_tokens: int,
    host_capacity_tokens: int = 0,
    num_replicas: int = 1,
    policy: int = ROUND_ROBIN,
    arrival_s: npt.NDArray[np.float64] | None = None,
    hold_s: npt.NDArray[np.float64] | None = None,
    max_imbalance_requests: int = 0,
) -> CacheHits:
    """Prefix-cache hits of requests spread over `num_replicas` replicas (module docstring).

    `capacity_tokens` / `host_capacity_tokens`: each replica's KV space on the GPUs and in
    host memory; `policy` ROUND_ROBIN (request i to replica i mod n) or PREFIX_AWARE (needs
    `arrival_s` and `hold_s`, see `advisor.engine.routing`).
    """
    n = prompt_tokens.shape[0]
    if prefix.num_requests != n:
        raise WorkloadError(
            f"prefix: block hashes for {prefix.num_requests} requests, prompts for {n}"
        )
    if kv_block_tokens < 1:
        raise WorkloadError(f"kv_block_tokens: must be >= 1, got {kv_block_tokens}")
    if num_replicas < 1:
        raise WorkloadError(f"num_replicas: must be >= 1, got {num_replicas}")
    zeros = np.zeros(n)
    replica, cached, host = _cache_pass(
        prefix.dense_ids,
        prefix.offsets,
        np.asarray(prompt_tokens, dtype=np.int64),
        prefix.block_tokens,
        max(capacity_tokens, 0) // prefix.block_tokens,
        max(host_capacity_tokens, 0) // prefix.block_tokens,
        kv_block_tokens,
        1,
        num_replicas,
        policy,
        zeros if arrival_s is None else np.asarray(arrival_s, dtype=np.float64),
        zeros if hold_s is None else np.asarray(hold_s, dtype=np.float64),
        max_imbalance_requests,
    )
    return CacheHits(replica, cached, host)


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
    hits = cache_hits(
        prefix, prompt_tokens, capacity_tokens=capacity_tokens, kv_block_tokens=kv_block_tokens
    )
    return hits.cached_tokens


def reused_prompt_share(prefix: PrefixBlocks, prompt_tokens: IntArray) -> float:
    """Share of prompt tokens in full blocks seen earlier in the trace (an unbounded cache).

    The measured reuse of a trace, independent of any replica: the upper bound of what a
    prefix cache could skip. 0 for an empty trace.
    """
    total = float(np.asarray(prompt_tokens).sum())
    if total <= 0:
        return 0.0
    n = prefix.num_requests
    _replica, cached, _host = _cache_pass(
        prefix.dense_ids,
        prefix.offsets,
        np.asarray(prompt_tokens, dtype=np.int64),
        prefix.block_tokens,
        int(prefix.hashes.shape[0]) + 1,
        0,
        1,
        0,
        1,
        ROUND_ROBIN,
        np.zeros(n),
        np.zeros(n),
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
