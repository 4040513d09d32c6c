"""Replay of the whole sample behind today's router: round robin vs prefix-aware."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.perf import CalibrationProfile
from advisor.engine.replay import replay_sample
from advisor.engine.workload import PrefixBlocks, Workload

PROFILE = CalibrationProfile(step_overhead_s=1e-3, seq_overhead_s=2e-5, overlap=0.3)
CONFIG = ReplicaConfig(
    model=DEFAULT_CATALOG.model("tiny-llama"),
    hardware=DEFAULT_CATALOG.gpu("CPU-DEV-2C"),
    weight_dtype="bf16",
    tensor_parallel=1,
    max_num_seqs=8,
    max_num_batched_tokens=2048,
    max_model_len=2048,
)


def two_system_prompts(num_requests: int = 40) -> Workload:
    """A A B B ..., one a second: two shared 16-token blocks, an own block, one more token."""
    rows = [[*([1, 2] if i % 4 < 2 else [3, 4]), 100 + i] for i in range(num_requests)]
    return Workload(
        np.arange(num_requests, dtype=np.float64),
        np.full(num_requests, 49, np.int64),
        np.full(num_requests, 2, np.int64),
        prefix=PrefixBlocks.from_lists(16, rows),
    )


def test_round_robin_replays_one_share_holding_both_prompts() -> None:
    # share 0 is A B A B ... (20 requests): all but the first A and first B hit 32 tokens
    out = replay_sample(
        CONFIG, PROFILE, two_system_prompts(), replicas=2, routing="round_robin", seed=0
    )
    assert out["routing"] == "round_robin"
    assert out["requests"] == 20
    assert out["completed"] == 20
    assert out["prefix_cached_share"] == pytest.approx(18 * 32 / (20 * 49))


def test_prefix_aware_replays_every_replica_and_caches_more() -> None:
    # a second apart, no request is outstanding when the next arrives: every tie goes to
    # replica 0, which then holds both prompts (the other one idles): 38 hits of 32 tokens
    out = replay_sample(
        CONFIG, PROFILE, two_system_prompts(), replicas=2, routing="prefix_aware", seed=0
    )
    assert out["routing"] == "prefix_aware"
    assert out["requests"] == 40
    assert out["completed"] == 40
    assert out["requests_per_replica"] == [40, 0]
    assert out["prefix_cached_share"] == pytest.approx(38 * 32 / (40 * 49))
    assert out["busy_fraction_max"] == pytest.approx(2 * float(out["busy_fraction"]))  # type: ignore[arg-type]


def test_one_replica_replays_the_same_either_way() -> None:
    sample = two_system_prompts(12)
    rr = replay_sample(CONFIG, PROFILE, sample, replicas=1, routing="round_robin", seed=0)
    aware = replay_sample(CONFIG, PROFILE, sample, replicas=1, routing="prefix_aware", seed=0)
    assert rr == aware
