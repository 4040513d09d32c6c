"""Sealed batches split in halves (for a server that finds one too large)."""

from __future__ import annotations

import gzip
import json

from probes.agent.batch import MAX_PREFIX_HASHES_PER_BATCH, BatchBuilder, split_sealed
from probes.agent.samplers import Observations
from probes.ingest.schema import parse_batch

T = 1_765_000_000.0  # Unix seconds, December 2025
GPU = {"uuid": "GPU-0", "index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80}


def test_it_splits_a_batch_into_halves_the_server_takes_with_every_row_once() -> None:
    builder = BatchBuilder()
    builder.add(Observations(
        gpus=[GPU],
        gpu_samples=[{"gpu_uuid": "GPU-0", "ts": T + s, "util_pct": 5, "mem_used_bytes": 1}
                     for s in (0, 1)],
        engine_samples=[{"served_name": "m", "instance": "h:1", "ts": T,
                         "num_requests_running": 1.0, "num_requests_waiting": 0.0}],
    ))  # fmt: skip
    for n in (1, 2):
        builder.add_request({"served_name": "m", "arrival_ts": T + n, "prompt_tokens": n,
                             "output_tokens": n})  # fmt: skip
    sealed = builder.seal({"dropped_records": 0})
    first, second = split_sealed(sealed.batch_id, sealed.body_gz)
    assert (first.batch_id, second.batch_id) == (f"{sealed.batch_id}.1", f"{sealed.batch_id}.2")
    assert (first.records, second.records) == (2, 3)
    assert first.counts == {"gpu_samples": 2, "engine_samples": 0, "requests": 0}
    assert second.counts == {"gpu_samples": 0, "engine_samples": 1, "requests": 2}
    batches = [parse_batch(json.loads(gzip.decompress(h.body_gz)), now_s=T + 100)
               for h in (first, second)]  # fmt: skip
    assert [len(b.gpu_samples) for b in batches] == [2, 0]
    assert [len(b.engine_samples) for b in batches] == [0, 1]
    assert [len(b.requests) for b in batches] == [0, 2]
    # Both halves name the GPU and the deployment, so each can be stored alone.
    halves = [json.loads(gzip.decompress(h.body_gz)) for h in (first, second)]
    assert all(h["gpus"] == [GPU] for h in halves)
    assert all(h["deployments"] == [{"served_name": "m"}] for h in halves)


def test_it_does_not_split_a_single_row() -> None:
    builder = BatchBuilder()
    builder.add(Observations(gpus=[GPU], gpu_samples=[{"gpu_uuid": "GPU-0", "ts": 1.0}]))
    sealed = builder.seal({})
    assert split_sealed(sealed.batch_id, sealed.body_gz) == []
    assert split_sealed("x" * 63, sealed.body_gz) == []  # `<id>.1` would pass 64 characters


def test_a_batch_is_sealed_early_when_its_requests_hold_many_prefix_hashes() -> None:
    builder = BatchBuilder()
    per_row = MAX_PREFIX_HASHES_PER_BATCH // 4
    row = {
        "served_name": "m",
        "arrival_ts": T,
        "prompt_tokens": per_row * 16,
        "output_tokens": 1,
        "prefix_block_hashes": [7] * per_row,
        "prefix_block_tokens": 16,
    }
    for _ in range(3):
        builder.add_request(row)
    assert not builder.full()
    builder.add_request(row)
    assert builder.full()
    sealed = builder.seal({})
    assert sealed.counts["requests"] == 4
    assert not builder.full()  # the count starts again with the next batch
