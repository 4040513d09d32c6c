"""Routing over replicas: hand-traced round robin vs prefix-aware placement and cache hits."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.perf import CalibrationProfile, Deployment
from advisor.engine.prefix_cache import cache_hits
from advisor.engine.routing import hold_s, route, routing_assumptions
from advisor.engine.sim import Replica, SchedulerConfig, prefix_cached_tokens_on
from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

PROFILE = CalibrationProfile(step_overhead_s=1e-3, seq_overhead_s=2e-5, overlap=0.3)
A, B = [1, 2], [3, 4]  # two system prompts of two 4-token blocks


def two_prompts() -> Workload:
    """A A B B A A B B, one a second, each with its own third block and a 13-token prompt.

    In pairs: with strict A B A B, round robin over two replicas would separate them too.
    """
    rows = [[*(A if i % 4 < 2 else B), 100 + i] for i in range(8)]
    return Workload(
        np.arange(8, dtype=np.float64),
        np.full(8, 13, np.int64),
        np.ones(8, np.int64),
        prefix=PrefixBlocks.from_lists(4, rows),
    )


def replica(block_size: int = 1) -> Replica:
    deployment = Deployment(
        DEFAULT_CATALOG.gpu("CPU-DEV-2C"),
        DEFAULT_CATALOG.model("tiny-llama"),
        DEFAULT_CATALOG.quant("bf16"),
        kv_cache_bytes=64 * 1024**2,
        max_model_len=2048,
    )
    return Replica(deployment, SchedulerConfig(block_size_tokens=block_size), PROFILE)


def test_round_robin_gives_each_replica_both_prompts() -> None:
    # replica 0 gets A B A B, replica 1 A B A B: each caches both prompts, so only the second
    # half hits (8 tokens of the shared blocks each)
    routed = route(replica(), two_prompts(), num_replicas=2, policy="round_robin")
    assert routed.replica.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert routed.hits.cached_tokens.tolist() == [0, 0, 0, 0, 8, 8, 8, 8]


def test_prefix_aware_keeps_a_on_one_replica_and_b_on_the_other() -> None:
    # each request is outstanding 1.5 s: the first B finds replica 0 busier (the second A is
    # still there) and no match anywhere, so it goes to the less loaded replica 1; from then
    # on A matches only on replica 0 and B only on replica 1
    routed = route(
        replica(), two_prompts(), num_replicas=2, policy="prefix_aware", hold=np.full(8, 1.5)
    )
    assert routed.replica.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert routed.hits.cached_tokens.tolist() == [0, 8, 0, 8, 8, 8, 8, 8]
    assert routed.requests_per_replica().tolist() == [4, 4]


def test_a_replicas_share_hits_its_own_cache_as_the_routing_pass_said() -> None:
    workload = two_prompts()
    served = replica()
    routed = route(served, workload, num_replicas=2, policy="prefix_aware", hold=np.full(8, 1.5))
    for q, share in enumerate(routed.shares(workload)):
        mine = routed.replica == q
        assert prefix_cached_tokens_on(served, share).tolist() == (
            routed.hits.cached_tokens[mine].tolist()
        )


def test_the_imbalance_guard_spreads_one_hot_prefix() -> None:
    # eight requests with prompt A at once, each outstanding for long. Guard 2: replica 0
    # takes three (loads 3 0), then it is more than 2 above the least loaded and the fourth
    # goes to replica 1 (a miss); from then on both hold A and ties go to the less loaded.
    rows = [[*A, 100 + i] for i in range(8)]
    prefix = PrefixBlocks.from_lists(4, rows)
    prompts = np.full(8, 13, np.int64)

    def spread(guard: int) -> tuple[list[int], list[int]]:
        hits = cache_hits(
            prefix,
            prompts,
            capacity_tokens=1000,
            kv_block_tokens=1,
            num_replicas=2,
            policy=1,
            arrival_s=np.zeros(8),
            hold_s=np.full(8, 100.0),
            max_imbalance_requests=guard,
        )
        return hits.replica.tolist(), hits.cached_tokens.tolist()

    assert spread(2) == ([0, 0, 0, 1, 1, 1, 0, 1], [0, 8, 8, 0, 8, 8, 8, 8])
    # without a guard the hot prefix piles every request onto replica 0
    assert spread(100) == ([0] * 8, [0, 8, 8, 8, 8, 8, 8, 8])


def test_prefix_aware_without_hashes_routes_to_the_least_loaded() -> None:
    plain = Workload(np.zeros(4), np.full(4, 13, np.int64), np.ones(4, np.int64))
    routed = route(replica(), plain, num_replicas=3, policy="prefix_aware", hold=np.ones(4))
    assert routed.replica.tolist() == [0, 1, 2, 0]
    assert routed.hits.cached_tokens.tolist() == [0, 0, 0, 0]


def test_a_request_is_held_for_its_unloaded_prefill_and_decode() -> None:
    served = replica()
    step = served.step_model
    workload = Workload(np.zeros(1), np.array([100]), np.array([11]))
    prefill = step.step_time_s(
        n_decode=0,
        decode_context_tokens=0.0,
        prefill_tokens=100,
        prefill_context_tokens=100.0,
        prefill_pairs=5050.0,
        n_prefill_seqs=1,
    )
    decode = step.step_time_s(n_decode=1, decode_context_tokens=105.0)
    assert hold_s(served, workload)[0] == pytest.approx(prefill + 10 * decode, rel=1e-12)


def test_it_rejects_an_unknown_policy_naming_the_field() -> None:
    with pytest.raises(WorkloadError, match="routing: unknown 'random'"):
        route(replica(), two_prompts(), num_replicas=2, policy="random")  # type: ignore[arg-type]
    with pytest.raises(WorkloadError, match="num_replicas: must be an integer >= 1, got 0"):
        route(replica(), two_prompts(), num_replicas=0, policy="round_robin")


def test_it_states_its_routing_and_offload_assumptions_only_when_not_the_defaults() -> None:
    assert routing_assumptions("round_robin", kv_offload_gib=0.0) == []
    aware, offload = routing_assumptions("prefix_aware", kv_offload_gib=64.0)
    assert aware.startswith("routing: prefix-aware")
    assert "at most 8 outstanding requests above the least loaded" in aware
    assert offload.startswith("KV offload: 64 GiB of host memory per replica")
    assert "assumed 25 GB/s host link per GPU" in offload
