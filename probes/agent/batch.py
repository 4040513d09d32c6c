"""Collect observations and request records into batches, and seal them as gzip JSON.

The node's inventory (GPUs, deployments) and host facts ride along every batch (they are
small), so the server can always resolve the rows and a restarted server learns the node
again from the next batch; a deployment's config.json (KiBs) rides along only in the batch
sealed after the sampler read it. Thread-safe: the proxy thread adds request records.

Rows are sealed in the column layout (`probes.ingest.schema`: one array per field, all of
the same length): less than half the bytes of one object per row, and a third of the
server's CPU to decode and validate them. A server that predates that layout refuses it;
the pusher then sends rows again (`columns_to_rows`).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from probes.agent import VERSION
from probes.agent.journal import Journal
from probes.agent.samplers import Observations, Row

# A batch is sealed early when it holds this many rows, so no batch nears the server's
# 8 MiB body limit (an engine sample with histograms is ~5 KB, a request record ~150 B).
MAX_RECORDS_PER_BATCH = 20_000
MAX_ENGINE_SAMPLES_PER_BATCH = 500
# Prompt block hashes take ~21 bytes each as JSON (an 8k-token prompt in 16-token blocks:
# 512 of them, ~11 KB): a batch is sealed early at this many, ~4 MB.
MAX_PREFIX_HASHES_PER_BATCH = 200_000


@dataclass(frozen=True)
class SealedBatch:
    batch_id: str
    records: int
    body_gz: bytes
    counts: dict[str, int]


class BatchBuilder:
    """With a `journal`, every addition is also written to the open batch's journal file."""

    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        # The open batch's id, known before it is sealed: its journal file is named by it.
        self._batch_id = uuid.uuid4().hex
        self._journaled: str | None = None  # the batch id whose journal has the inventory
        self._lock = threading.Lock()
        self._gpus: dict[str, Row] = {}
        self._deployments: dict[str, Row] = {}
        self._host: Row | None = None
        self._gpu_samples: list[Row] = []
        self._engine_samples: list[Row] = []
        self._requests: list[Row] = []
        self._prefix_hashes = 0  # in the open batch's request rows

    def add(self, observations: Observations) -> None:
        with self._lock:
            self._write_journal("o", observations_json(observations))
            for gpu in observations.gpus:
                self._gpus[gpu["uuid"]] = gpu
            for deployment in observations.deployments:
                name = deployment["served_name"]
                # A config.json rides along once: keep it until the batch is sealed even when
                # a later round reports the deployment without it.
                unsent = (self._deployments.get(name) or {}).get("hf_config")
                if unsent is not None and "hf_config" not in deployment:
                    deployment = {**deployment, "hf_config": unsent}
                self._deployments[name] = deployment
            if observations.host is not None:
                self._host = {**(self._host or {}), **observations.host}
            self._gpu_samples.extend(observations.gpu_samples)
            self._engine_samples.extend(observations.engine_samples)

    def add_request(self, row: Row) -> None:
        with self._lock:
            self._write_journal("r", row)
            self._requests.append(row)
            self._prefix_hashes += len(row.get("prefix_block_hashes") or ())

    def _write_journal(self, kind: str, data: object) -> None:
        if self._journal is None:
            return
        if self._journaled != self._batch_id:
            # A new batch's journal starts with the inventory, so it can be sealed alone.
            inventory = {
                "gpus": list(self._gpus.values()),
                "deployments": list(self._deployments.values()),
                "host": self._host,
            }
            self._journal.append(self._batch_id, {"o": inventory})
            self._journaled = self._batch_id
        self._journal.append(self._batch_id, {kind: data})

    def replay(self, entries: list[dict[str, Any]]) -> None:
        """Add what a journal holds (see `probes.agent.journal`)."""
        for entry in entries:
            if isinstance(entry.get("o"), dict):
                o = entry["o"]
                self.add(Observations(gpus=o.get("gpus") or [],
                                      deployments=o.get("deployments") or [],
                                      gpu_samples=o.get("gpu_samples") or [],
                                      engine_samples=o.get("engine_samples") or [],
                                      host=o.get("host")))  # fmt: skip
            elif isinstance(entry.get("r"), dict):
                self.add_request(entry["r"])

    def full(self) -> bool:
        with self._lock:
            rows = len(self._gpu_samples) + len(self._engine_samples) + len(self._requests)
            return (
                rows >= MAX_RECORDS_PER_BATCH
                or len(self._engine_samples) >= MAX_ENGINE_SAMPLES_PER_BATCH
                or self._prefix_hashes >= MAX_PREFIX_HASHES_PER_BATCH
            )

    def seal(self, agent: dict[str, Any], batch_id: str | None = None) -> SealedBatch:
        """Take everything collected so far into one batch (possibly only inventory + host);
        its id is the open batch's unless `batch_id` is given."""
        with self._lock:
            batch_id = batch_id or self._batch_id
            self._batch_id = uuid.uuid4().hex
            gpu_samples, self._gpu_samples = self._gpu_samples, []
            engine_samples, self._engine_samples = self._engine_samples, []
            requests, self._requests = self._requests, []
            self._prefix_hashes = 0
            gpus = list(self._gpus.values())
            deployments = list(self._deployments.values())
            # Sent once (in this batch); later batches carry the deployment without it.
            self._deployments = {
                name: {key: value for key, value in row.items() if key != "hf_config"}
                for name, row in self._deployments.items()
            }
            host = self._host
        # Deployments named only by request records (proxy before the first scrape).
        named = {d["served_name"] for d in deployments}
        for row in requests:
            if row["served_name"] not in named:
                named.add(row["served_name"])
                deployments.append({"served_name": row["served_name"]})
        payload: dict[str, Any] = {
            "batch_id": batch_id,
            "sent_at": time.time(),
            "agent": {"version": VERSION, **agent},
            "gpus": gpus,
            "deployments": deployments,
            "gpu_samples": rows_to_columns(gpu_samples),
            "engine_samples": rows_to_columns(engine_samples),
            "requests": rows_to_columns(requests),
        }
        if host is not None:
            payload["host"] = host
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        counts = {
            "gpu_samples": len(gpu_samples),
            "engine_samples": len(engine_samples),
            "requests": len(requests),
        }
        return SealedBatch(batch_id, sum(counts.values()), gzip.compress(body, 6), counts)


def observations_json(observations: Observations) -> dict[str, Any]:
    """What `BatchBuilder.add` keeps of observations (not the notes), as JSON."""
    return {
        "gpus": observations.gpus,
        "deployments": observations.deployments,
        "gpu_samples": observations.gpu_samples,
        "engine_samples": observations.engine_samples,
        "host": observations.host,
    }


# The payload's row lists that may be sent column-wise.
COLUMN_LISTS = ("gpu_samples", "engine_samples", "requests")


def rows_to_columns(rows: list[Row]) -> dict[str, list[Any]] | list[Row]:
    """Rows as one array per field (null where a row lacks the field); `[]` when empty."""
    if not rows:
        return []
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def columns_to_rows(body_gz: bytes) -> bytes:
    """The same sealed batch with its rows as one object per row (for an older server)."""
    return reencode(body_gz, rows=True)


# What a server older than prompt block hashes refuses: request fields and an agent key.
PREFIX_HASH_FIELDS = ("prefix_block_hashes", "prefix_block_tokens")
PREFIX_HASH_AGENT_KEY = "dropped_prefix_hashes"


def reencode(
    body_gz: bytes,
    *,
    rows: bool = False,
    agent_extra: dict[str, Any] | None = None,
    strip_prefix_hashes: bool = False,
) -> bytes:
    """The same sealed batch, its rows as one object per row if `rows`, with `agent_extra`
    added to its `agent` metadata (what the pusher learnt after the batch was sealed), and
    without prompt block hashes if `strip_prefix_hashes` (for a server that predates them)."""
    payload = json.loads(gzip.decompress(body_gz))
    if strip_prefix_hashes:
        requests = payload.get("requests")
        for row in requests if isinstance(requests, list) else [requests]:
            if isinstance(row, dict):
                for name in PREFIX_HASH_FIELDS:
                    row.pop(name, None)
        if isinstance(payload.get("agent"), dict):
            payload["agent"].pop(PREFIX_HASH_AGENT_KEY, None)
    if rows:
        for name in COLUMN_LISTS:
            columns = payload.get(name)
            if isinstance(columns, dict):
                names = list(columns)
                payload[name] = [
                    {k: v for k, v in zip(names, values, strict=True) if v is not None}
                    for values in zip(*columns.values(), strict=True)
                ]
    if agent_extra:
        payload["agent"] = {**(payload.get("agent") or {}), **agent_extra}
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return gzip.compress(body, 6)


# The server's batch id limit (`probes.ingest.schema.BATCH_ID_RE`): 1-64 characters.
MAX_BATCH_ID_CHARS = 64


def split_sealed(batch_id: str, body_gz: bytes) -> list[SealedBatch]:
    """A sealed batch as two halves (rows in the same order, inventory in both), with ids
    `<id>.1` and `<id>.2` so a retried half is still "already stored"; [] when it holds
    fewer than two rows or the ids would be too long."""
    if len(batch_id) + 2 > MAX_BATCH_ID_CHARS:
        return []
    payload = json.loads(gzip.decompress(body_gz))
    lengths = {name: _length(payload.get(name)) for name in COLUMN_LISTS}
    total = sum(lengths.values())
    if total < 2:
        return []
    cut = total // 2  # the first half takes the first `cut` rows of the lists in order
    halves: list[SealedBatch] = []
    for part, (start, stop) in enumerate(((0, cut), (cut, total)), 1):
        half = {**payload, "batch_id": f"{batch_id}.{part}"}
        offset = 0
        counts = {}
        for name in COLUMN_LISTS:
            lo = min(max(start - offset, 0), lengths[name])
            hi = min(max(stop - offset, 0), lengths[name])
            offset += lengths[name]
            half[name] = _slice(payload.get(name), lo, hi)
            counts[name] = hi - lo
        body = json.dumps(half, separators=(",", ":"), allow_nan=False).encode()
        halves.append(SealedBatch(half["batch_id"], stop - start, gzip.compress(body, 6), counts))
    return halves


def _length(rows: object) -> int:
    if isinstance(rows, dict):
        return len(next(iter(rows.values()), []))
    return len(rows) if isinstance(rows, list) else 0


def _slice(rows: object, lo: int, hi: int) -> object:
    if isinstance(rows, dict):
        if lo == hi:
            return []
        return {name: values[lo:hi] for name, values in rows.items()}
    return rows[lo:hi] if isinstance(rows, list) else rows
