"""How a deployment's router spreads requests over its replicas, each with its own prefix cache.

`round_robin`: request i goes to replica i mod n (what Kubernetes Services and vLLM's
production-stack router do by default). Each replica's cache only sees its own share, so a
system prompt shared by a few requests per second is cached on every replica.

`prefix_aware`: like the prefix-aware routers of llm-d, vLLM production-stack and AIBrix,
a request goes to the replica whose cache holds the longest leading run of its prompt
blocks (GPU or host tier), ties to the one with the fewest outstanding requests, then the
lowest index. A load-imbalance guard (AIBrix's prefix-cache router has the same kind) skips
replicas with more than `max_imbalance_requests` outstanding requests above the least
loaded one, so one hot prefix cannot pile every request onto one replica.

`route(replica, workload, num_replicas, policy)` runs the multi-replica LRU pre-pass of
`advisor.engine.prefix_cache` in arrival order and returns each request's replica and hits;
`Routed.shares(workload)` gives each replica's requests, which `advisor.engine.sim.simulate`
then serves (its own single-replica pass over a share gives the same cached tokens, since a
replica's cache only depends on the requests routed to it).

What this approximates: the router's view of the caches is exact and immediate (llm-d and
AIBrix estimate it from KV events or their own routing history, so they can miss); a
request counts as outstanding from its arrival for its unloaded service time (`hold_s`:
prefill of its uncached-at-worst prompt plus its decode steps at batch 1), not for its
simulated time, because the pre-pass runs before the simulation; and without prompt block
hashes prefix-aware routing is least-outstanding-requests routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from advisor.engine import _simcore
from advisor.engine.prefix_cache import PREFIX_AWARE, ROUND_ROBIN, CacheHits, cache_hits
from advisor.engine.sim import HOST_LINK_BYTES_PER_S, Replica, host_capacity_tokens
from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

RoutingPolicy = Literal["round_robin", "prefix_aware"]
ROUTING_POLICIES: tuple[RoutingPolicy, ...] = ("round_robin", "prefix_aware")
# Outstanding requests a replica may carry above the least loaded one and still be chosen
# for its cache (the prefix-aware router's imbalance guard).
MAX_IMBALANCE_REQUESTS = 8


@dataclass(frozen=True, eq=False)
class Routed:
    """Where each request went and what it found in that replica's cache."""

    policy: RoutingPolicy
    num_replicas: int
    hits: CacheHits

    @property
    def replica(self) -> IntArray:
        return self.hits.replica

    def requests_per_replica(self) -> IntArray:
        counts: IntArray = np.bincount(self.hits.replica, minlength=self.num_replicas)
        return counts

    def shares(self, workload: Workload) -> list[Workload]:
        """Each replica's requests, in arrival order (empty for a replica that got none)."""
        return [
            workload.select(np.flatnonzero(self.hits.replica == q))
            for q in range(self.num_replicas)
        ]


@njit(cache=True)
def _hold_s(coef, prompt_tokens, output_tokens):  # type: ignore[no-untyped-def]
    out = np.empty(prompt_tokens.shape[0])
    for r in range(prompt_tokens.shape[0]):
        p = prompt_tokens[r]
        o = output_tokens[r]
        prefill = _simcore.step_time(coef, 0, 0.0, p, float(p), p * (p + 1) / 2.0, 1)
        decode = _simcore.step_time(coef, 1, float(p + o // 2), 0, 0.0, 0.0, 1)
        out[r] = prefill + max(o - 1, 0) * decode
    return out


def hold_s(replica: Replica, workload: Workload) -> FloatArray:
    """Each request's unloaded service time: its whole prompt as one prefill step, then its
    decode steps alone at its mean context (the routing pre-pass's outstanding-request clock).
    """
    out: FloatArray = _hold_s(
        replica.step_model.coef,
        np.asarray(workload.prompt_tokens, dtype=np.int64),
        np.asarray(workload.output_tokens, dtype=np.int64),
    )
    return out


def route(
    replica: Replica,
    workload: Workload,
    *,
    num_replicas: int,
    policy: RoutingPolicy,
    max_imbalance_requests: int = MAX_IMBALANCE_REQUESTS,
    hold: FloatArray | None = None,
) -> Routed:
    """Spread `workload` over `num_replicas` copies of `replica` (module docstring).

    `hold`: each request's outstanding time for the imbalance guard (default `hold_s`).
    """
    if policy not in ROUTING_POLICIES:
        raise WorkloadError(f"routing: unknown {policy!r}; known: {list(ROUTING_POLICIES)}")
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise WorkloadError(f"num_replicas: must be an integer >= 1, got {num_replicas!r}")
    n = workload.num_requests
    prefix = workload.prefix
    if prefix is None or not replica.scheduler.enable_prefix_caching:
        # no cache to aim at: the pass still routes (by load alone) but hits nothing
        prefix = PrefixBlocks(1, np.zeros(0, np.int64), np.zeros(n + 1, np.int64))
    block = replica.scheduler.block_size_tokens
    aware = policy == "prefix_aware"
    hits = cache_hits(
        prefix,
        workload.prompt_tokens,
        capacity_tokens=replica.total_kv_blocks * block,
        kv_block_tokens=block,
        host_capacity_tokens=host_capacity_tokens(replica),
        num_replicas=num_replicas,
        policy=PREFIX_AWARE if aware else ROUND_ROBIN,
        arrival_s=workload.arrival_s,
        hold_s=(hold_s(replica, workload) if hold is None else hold) if aware else None,
        max_imbalance_requests=max_imbalance_requests,
    )
    return Routed(policy, num_replicas, hits)


def routing_assumptions(policy: RoutingPolicy, *, kv_offload_gib: float) -> list[str]:
    """What an assessment assumes about the router and host KV offload, in words (none for
    round robin without offload, the defaults)."""
    out = []
    if policy == "prefix_aware":
        out.append(
            "routing: prefix-aware (the replica holding the longest cached prefix, at most "
            f"{MAX_IMBALANCE_REQUESTS} outstanding requests above the least loaded): the "
            "replay routes every request this way; the load curves assume an even spread, so "
            "the sizing does not count its extra cache hits"
        )
    if kv_offload_gib > 0:
        out.append(
            f"KV offload: {kv_offload_gib:g} GiB of host memory per replica as a second LRU "
            "tier of the prefix cache; a hit there is charged its load over an assumed "
            f"{HOST_LINK_BYTES_PER_S / 1e9:g} GB/s host link per GPU (PCIe Gen4 x16; the "
            "catalog has no PCIe figure) as the prefill tokens that take as long"
        )
    return out
