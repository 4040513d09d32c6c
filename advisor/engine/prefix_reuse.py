"""Assumed prefix reuse, for request samples that carry no prompt block hashes.

Without hashes an assessment cannot know how much of each prompt a prefix cache would find,
so it charges prefill for every prompt token (reuse 0%) and shows what the plan costs at
`REUSE_SHARES` of the prompt tokens reused (`advisor.engine.plan_tables.prefix_reuse`).

`synthetic_prefix(prompt_tokens, reuse_share, block_tokens)` models a reuse share r as the
commonest cause of reuse, one shared system prompt: request i's first
`floor(r * prompt_i / block_tokens)` full blocks are the shared prompt's leading blocks (block
j has hash j in every request, so a shorter shared part is a prefix of a longer one), and its
other full blocks are its own (hashes no other request has). A trailing partial block gets no
hash (it can never be reused). The reuse a cache then finds is a little below r: blocks are
whole, and the first request to carry a shared block computes it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

IntArray = npt.NDArray[np.int64]

REUSE_SHARES = (0.0, 0.3, 0.6)


def synthetic_prefix(
    prompt_tokens: IntArray, reuse_share: float, block_tokens: int
) -> PrefixBlocks:
    """Block hashes of `prompt_tokens` with about `reuse_share` of each prompt shared (above)."""
    if not 0.0 <= reuse_share <= 1.0:
        raise WorkloadError(f"reuse_share: must be in [0, 1], got {reuse_share!r}")
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise WorkloadError(f"block_tokens: must be an integer >= 1, got {block_tokens!r}")
    prompts = np.asarray(prompt_tokens, dtype=np.int64)
    full = prompts // block_tokens
    # the small epsilon keeps r x prompt on a block boundary from flooring one block short
    shared = np.minimum(np.floor(reuse_share * prompts / block_tokens + 1e-9), full)
    shared = shared.astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(full))).astype(np.int64)
    position = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], full)
    in_shared = position < np.repeat(shared, full)
    # own blocks are numbered after the longest shared part, so no hash is both
    first_own = int(shared.max(initial=0))
    own = first_own + np.cumsum(~in_shared) - 1
    hashes = np.where(in_shared, position, own).astype(np.int64)
    return PrefixBlocks(block_tokens, hashes, offsets)


def with_reuse(sample: Workload, reuse_share: float, block_tokens: int) -> Workload:
    """`sample` with `synthetic_prefix` block hashes (arrivals and lengths unchanged)."""
    prefix = synthetic_prefix(sample.prompt_tokens, reuse_share, block_tokens)
    return Workload(
        sample.arrival_s,
        sample.prompt_tokens,
        sample.output_tokens,
        sample.max_concurrency,
        sample.name,
        prefix,
    )
