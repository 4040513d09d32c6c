"""Builders shared by the probes tests: batches as an agent would send them."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from django.test import Client

from probes.models import Node
from probes.services import node_register

H100 = "NVIDIA H100 80GB HBM3"
H100_BYTES = 85_899_345_920


def registered_node(hostname: str = "gpu-1", cluster: str = "prod") -> tuple[Node, str]:
    return node_register(cluster_name=cluster, hostname=hostname)


def gpu(uuid: str = "GPU-0", index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"uuid": uuid, "index": index, "name": H100, "memory_bytes": H100_BYTES, **extra}


def gpu_sample(uuid: str = "GPU-0", ts: float | None = None, **extra: Any) -> dict[str, Any]:
    row = {"gpu_uuid": uuid, "ts": ts if ts is not None else time.time() - 60,
           "util_pct": 42.5, "mem_used_bytes": 40 * 2**30, "power_w": 350.0}  # fmt: skip
    return {**row, **extra}


def engine_sample(ts: float | None = None, **extra: Any) -> dict[str, Any]:
    row = {
        "served_name": "llama", "instance": "gpu-1:8000",
        "ts": ts if ts is not None else time.time() - 60,
        "num_requests_running": 3, "num_requests_waiting": 1, "kv_cache_usage": 0.25,
        "prompt_tokens_total": 1000.0, "generation_tokens_total": 4000.0,
    }  # fmt: skip
    return {**row, **extra}


def request(ts: float | None = None, **extra: Any) -> dict[str, Any]:
    row = {"served_name": "llama", "arrival_ts": ts if ts is not None else time.time() - 60,
           "prompt_tokens": 100, "output_tokens": 20, "ttft_s": 0.05, "e2e_s": 0.5}  # fmt: skip
    return {**row, **extra}


def batch(batch_id: str = "b-1", **lists: Any) -> dict[str, Any]:
    return {"batch_id": batch_id, "agent": {"version": "test"}, **lists}


def post(
    client: Client, token: str | None, payload: Any, *, compress: bool = True, **headers: str
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    extra: dict[str, Any] = dict(headers)
    if compress:
        body = gzip.compress(body)
        extra.setdefault("HTTP_CONTENT_ENCODING", "gzip")
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post("/api/v1/ingest/", data=body, content_type="application/json", **extra)
