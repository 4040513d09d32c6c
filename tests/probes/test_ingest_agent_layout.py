"""The agent seals rows column-wise, and sends rows again to a server that predates that."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx

from probes.agent.batch import BatchBuilder, columns_to_rows, rows_to_columns
from probes.agent.pusher import Pusher
from probes.agent.samplers import Observations
from probes.agent.spool import Spool

GPU_ROWS = [
    {"gpu_uuid": "GPU-0", "ts": 10.0, "util_pct": 5, "mem_used_bytes": 1, "power_w": 300.0},
    {"gpu_uuid": "GPU-1", "ts": 10.0, "util_pct": 7, "mem_used_bytes": 2},
]


def _sealed() -> bytes:
    builder = BatchBuilder()
    builder.add(Observations(gpus=[{"uuid": "GPU-0", "index": 0, "name": "H100",
                                    "memory_bytes": 80}], gpu_samples=list(GPU_ROWS)))  # fmt: skip
    builder.add_request({"served_name": "llama", "arrival_ts": 9.0, "prompt_tokens": 1,
                         "output_tokens": 2, "status": "ok"})  # fmt: skip
    return builder.seal({"dropped_records": 0}).body_gz


def test_a_sealed_batch_carries_its_rows_column_wise() -> None:
    payload = json.loads(gzip.decompress(_sealed()))
    assert payload["gpu_samples"] == {
        "gpu_uuid": ["GPU-0", "GPU-1"], "ts": [10.0, 10.0], "util_pct": [5, 7],
        "mem_used_bytes": [1, 2], "power_w": [300.0, None],
    }  # fmt: skip
    assert payload["requests"]["served_name"] == ["llama"]
    assert payload["engine_samples"] == []  # no rows: the same `[]` in both layouts
    assert payload["gpus"][0]["uuid"] == "GPU-0"  # the inventory stays rows


def test_columns_go_back_to_the_rows_they_came_from() -> None:
    rows = json.loads(gzip.decompress(columns_to_rows(_sealed())))
    assert rows["gpu_samples"] == GPU_ROWS
    assert rows["requests"][0]["prompt_tokens"] == 1
    assert rows_to_columns([]) == []


def _pusher(tmp_path: Path, old_server: bool) -> tuple[Pusher, Spool, list[dict[str, Any]]]:
    """A pusher whose server refuses columns as a server before the column layout did."""
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        payload = json.loads(gzip.decompress(request.content))
        seen.append(payload)
        if old_server and not isinstance(payload["gpu_samples"], list):
            errors = [{"field": "gpu_samples", "message": "must be a list"}]
            return httpx.Response(400, json={"errors": errors})
        if not isinstance(payload["gpu_samples"], list):
            errors = [{"field": "gpu_samples.util_pct[1]", "message": "must be a number"}]
            return httpx.Response(400, json={"errors": errors})
        return httpx.Response(201, json={"status": "stored"})

    token = tmp_path / "token"
    token.write_text("secret")
    spool = Spool(tmp_path / "spool", max_bytes=2**20)
    client = httpx.Client(transport=httpx.MockTransport(answer))
    return Pusher(spool, "http://server", token, client), spool, seen


def test_it_sends_rows_to_a_server_that_predates_columns_and_loses_nothing(
    tmp_path: Path,
) -> None:
    pusher, spool, seen = _pusher(tmp_path, old_server=True)
    for batch_id in ("a", "b"):
        spool.put(batch_id, 3, _sealed())
    for _ in range(2):
        entry = spool.oldest()
        assert entry is not None
        assert pusher.push_one(entry) is True
    assert spool.oldest() is None
    assert (pusher.stats.stored, pusher.stats.rejected) == (2, 0)
    assert pusher.rows_only
    # One refused try, then rows: the second batch went as rows at once.
    assert [isinstance(p["gpu_samples"], list) for p in seen] == [False, True, True]
    assert seen[1]["gpu_samples"] == GPU_ROWS


def test_a_columnar_batch_refused_for_another_reason_is_set_aside_as_before(
    tmp_path: Path,
) -> None:
    pusher, spool, seen = _pusher(tmp_path, old_server=False)
    spool.put("a", 3, _sealed())
    entry = spool.oldest()
    assert entry is not None
    assert pusher.push_one(entry) is True
    assert pusher.stats.rejected == 1
    assert not pusher.rows_only
    assert len(seen) == 1
    assert list((tmp_path / "spool" / "dead-letter").glob("*.json.gz"))
