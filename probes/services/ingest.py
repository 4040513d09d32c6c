"""Store one validated agent batch: all of it or none of it, and each batch id only once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from probes.ingest.schema import (
    DEPLOYMENT_FIELDS,
    ENGINE_SAMPLE_FIELDS,
    GPU_FIELDS,
    GPU_SAMPLE_FIELDS,
    MAX_ERRORS,
    Batch,
    PayloadError,
)
from probes.models import (
    EngineSample,
    Gpu,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
    RequestSource,
)
from probes.services.bulk import bulk_insert_ignoring_conflicts

GPU_SAMPLE_COLUMNS = ("gpu_id", *(f.name for f in GPU_SAMPLE_FIELDS[1:]))
ENGINE_SAMPLE_COLUMNS = ("deployment_id", "node_id", *(f.name for f in ENGINE_SAMPLE_FIELDS[1:]))
REQUEST_COLUMNS = (
    "deployment_id", "arrival_ts", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s",
    "status", "source",
)  # fmt: skip
_GPU = {f.name: i for i, f in enumerate(GPU_FIELDS)}
# How stale Node.last_seen may get before a batch refreshes it (agents push every 10 s).
SEEN_EVERY = timedelta(seconds=5)
_DEPLOYMENT = {f.name: i for i, f in enumerate(DEPLOYMENT_FIELDS)}


@dataclass(frozen=True)
class IngestResult:
    """What happened to a batch; `duplicate` means it had been stored before (nothing new)."""

    batch_id: str
    duplicate: bool
    stored: Mapping[str, int] = field(default_factory=dict)
    duplicate_rows: int = 0


def batch_ingest(*, node: Node, batch: Batch, received_at: datetime | None = None) -> IngestResult:
    """Store a batch from `node` in one transaction; a repeated batch id stores nothing.

    Raises PayloadError (nothing stored) when a row names a GPU that is neither in the
    batch's inventory nor registered to this node.
    """
    now = received_at or timezone.now()
    with transaction.atomic():
        batch_pk = _batch_claim(node=node, batch_id=batch.batch_id, now=now)
        if batch_pk is None:
            return IngestResult(batch_id=batch.batch_id, duplicate=True)
        gpu_ids = _gpus_upsert(node=node, rows=batch.gpus)
        deployment_ids = _deployments_upsert(node=node, batch=batch, gpu_ids=gpu_ids)

        gpu_rows = _resolve_gpu_samples(batch.gpu_samples, gpu_ids)
        engine_rows = [(deployment_ids[row[0]], node.pk, *row[1:]) for row in batch.engine_samples]
        request_rows = [
            (deployment_ids[row[0]], *row[1:], RequestSource.PROXY) for row in batch.requests
        ]
        ts_cols = frozenset({"ts", "arrival_ts"})
        gpu_inserted = bulk_insert_ignoring_conflicts(
            GpuSample, GPU_SAMPLE_COLUMNS, gpu_rows, ts_columns=ts_cols
        )
        engine_inserted = bulk_insert_ignoring_conflicts(
            EngineSample, ENGINE_SAMPLE_COLUMNS, engine_rows,
            ts_columns=ts_cols, json_columns=frozenset({"histograms"}),
        )  # fmt: skip
        request_inserted = bulk_insert_ignoring_conflicts(
            RequestRecord, REQUEST_COLUMNS, request_rows, ts_columns=ts_cols
        )
        stamps = [
            *(row[1] for row in batch.gpu_samples),
            *(row[2] for row in batch.engine_samples),
            *(row[1] for row in batch.requests),
        ]
        duplicates = (
            len(gpu_rows) - gpu_inserted
            + len(engine_rows) - engine_inserted
            + len(request_rows) - request_inserted
        )  # fmt: skip
        IngestBatch.objects.filter(pk=batch_pk).update(
            gpu_samples=gpu_inserted,
            engine_samples=engine_inserted,
            requests=request_inserted,
            duplicate_rows=duplicates,
            min_ts=_dt(min(stamps)) if stamps else None,
            max_ts=_dt(max(stamps)) if stamps else None,
        )
    # After the commit: every batch of a node would otherwise hold that node's row lock until
    # its commit, serialising the node's concurrent batches.
    _node_seen(node=node, batch=batch, now=now)
    return IngestResult(
        batch_id=batch.batch_id,
        duplicate=False,
        stored={
            "gpu_samples": gpu_inserted,
            "engine_samples": engine_inserted,
            "requests": request_inserted,
        },
        duplicate_rows=duplicates,
    )


def _batch_claim(*, node: Node, batch_id: str, now: datetime) -> int | None:
    """Insert the batch id; None when it is already stored (or being stored by a concurrent
    request, whose commit this waits for). One round trip, no savepoint."""
    table = IngestBatch._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (node_id, batch_id, received_at, gpu_samples, '
            "engine_samples, requests, duplicate_rows) VALUES (%s, %s, %s, 0, 0, 0, 0) "
            "ON CONFLICT (node_id, batch_id) DO NOTHING RETURNING id",
            [node.pk, batch_id, connection.ops.adapt_datetimefield_value(now)],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _gpus_upsert(*, node: Node, rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
    """Create or update the reported GPUs on this node; uuid -> id of all the node's GPUs."""
    reported = {row[_GPU["uuid"]]: row for row in rows}
    known = {gpu.uuid: gpu for gpu in Gpu.objects.filter(Q(node=node) | Q(uuid__in=list(reported)))}
    is_mig = _GPU["mig_parent_uuid"]
    # Physical GPUs first so a MIG instance can point at its parent.
    for uuid, row in sorted(reported.items(), key=lambda item: item[1][is_mig] is not None):
        parent = known.get(row[is_mig]) if row[is_mig] else None
        wanted = {
            "node_id": node.pk,
            "index": row[_GPU["index"]],
            "model_name": row[_GPU["name"]],
            "memory_bytes": row[_GPU["memory_bytes"]],
            "mig_parent_id": parent.pk if parent else None,
        }
        gpu = known.get(uuid)
        if gpu is None:
            known[uuid] = Gpu.objects.create(uuid=uuid, **wanted)
        elif any(getattr(gpu, name) != value for name, value in wanted.items()):
            # Last reporter wins: a GPU that moved (node renamed, re-registered) follows it.
            for name, value in wanted.items():
                setattr(gpu, name, value)
            gpu.save(update_fields=[name.removesuffix("_id") for name in wanted])
    return {uuid: gpu.pk for uuid, gpu in known.items() if gpu.node_id == node.pk}


def _deployments_upsert(*, node: Node, batch: Batch, gpu_ids: Mapping[str, int]) -> dict[str, int]:
    """served_name -> deployment id in the node's cluster, creating deployments first seen."""
    declared = {row[_DEPLOYMENT["served_name"]]: row for row in batch.deployments}
    names = set(declared)
    names.update(row[0] for row in batch.engine_samples)
    names.update(row[0] for row in batch.requests)
    if not names:
        return {}
    found = {
        d.served_name: d
        for d in ModelDeployment.objects.filter(cluster_id=node.cluster_id, served_name__in=names)
    }
    for name in sorted(names - set(found)):
        row = declared.get(name)
        model_id = (row[_DEPLOYMENT["model_id"]] if row else None) or name
        deployment, _created = ModelDeployment.objects.get_or_create(
            cluster_id=node.cluster_id, served_name=name, defaults={"model_id": model_id}
        )
        found[name] = deployment
    for name, row in declared.items():
        uuids = row[_DEPLOYMENT["gpu_uuids"]] or []
        ids = [gpu_ids[uuid] for uuid in uuids if uuid in gpu_ids]
        if ids:
            found[name].gpus.add(*ids)
    return {name: deployment.pk for name, deployment in found.items()}


def _resolve_gpu_samples(
    rows: Sequence[tuple[Any, ...]], gpu_ids: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    resolved: list[tuple[Any, ...]] = []
    errors: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        gpu_id = gpu_ids.get(row[0])
        if gpu_id is None:
            errors.append(
                (
                    f"gpu_samples[{i}].gpu_uuid",
                    f"unknown GPU {row[0]!r}: list it in `gpus` (it is not registered to "
                    "this node)",
                )
            )
            if len(errors) >= MAX_ERRORS:
                break
            continue
        resolved.append((gpu_id, *row[1:]))
    if errors:
        raise PayloadError(errors)
    return resolved


def _node_seen(*, node: Node, batch: Batch, now: datetime) -> None:
    """Note the node's last contact and what its agent reported; skipped when nothing but
    `last_seen` would change and it changed less than SEEN_EVERY ago."""
    changes: dict[str, Any] = {}
    if batch.host is not None and batch.host != node.host_info:
        changes["host_info"] = batch.host
    agent = batch.agent
    reported = {
        "agent_version": agent.get("version") or None,
        "agent_dropped_records": agent.get("dropped_records"),
        "agent_dropped_batches": agent.get("dropped_batches"),
    }
    for name, value in reported.items():
        if value is not None and getattr(node, name) != value:
            changes[name] = value
    if not changes and node.last_seen is not None and now - node.last_seen < SEEN_EVERY:
        return
    changes["last_seen"] = now
    Node.objects.filter(pk=node.pk).update(**changes)
    for name, value in changes.items():
        setattr(node, name, value)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
