"""Store one validated agent batch: all of it or none of it, and each batch id only once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from probes.ingest.schema import (
    DEPLOYMENT_FIELDS,
    ENGINE_SAMPLE_FIELDS,
    GPU_FIELDS,
    GPU_SAMPLE_FIELDS,
    MAX_ERRORS,
    Batch,
    Columns,
    PayloadError,
)
from probes.models import (
    EngineSample,
    Gpu,
    GpuMove,
    GpuMoveOutcome,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
    RequestSource,
)
from probes.services.bulk import (
    RowsAlreadyStored,
    bulk_insert_columns,
    bulk_insert_ignoring_conflicts,
)

GPU_SAMPLE_COLUMNS = ("gpu_id", *(f.name for f in GPU_SAMPLE_FIELDS[1:]))
ENGINE_SAMPLE_COLUMNS = ("deployment_id", "node_id", *(f.name for f in ENGINE_SAMPLE_FIELDS[1:]))
REQUEST_COLUMNS = (
    "deployment_id", "arrival_ts", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s",
    "status", "prefix_block_hashes", "prefix_block_tokens", "source",
)  # fmt: skip
_GPU = {f.name: i for i, f in enumerate(GPU_FIELDS)}
# How stale Node.last_seen may get before a batch refreshes it (agents push every 10 s).
SEEN_EVERY = timedelta(seconds=5)
_DEPLOYMENT = {f.name: i for i, f in enumerate(DEPLOYMENT_FIELDS)}
# A GPU moves to another node of its cluster only once its old node has not reported it for
# this long: two live nodes claiming one GPU is a misconfiguration or a stolen token.
GPU_MOVE_QUIET = timedelta(minutes=5)
# What ingest may create: a node serves a handful of models, and each deployment costs a row
# on every cluster page and in every assessment. Admins can create more.
MAX_NEW_DEPLOYMENTS_PER_BATCH = 16
MAX_DEPLOYMENTS_PER_NODE = 64


class BatchConflict(ValueError):
    """The batch id was stored before with other rows (HTTP 409): a bug, never a retry."""


@dataclass(frozen=True)
class _Refusal:
    gpu_id: int
    from_node_id: int
    reason: str


class GpuClaimRefused(PayloadError):
    """The batch lists a GPU another node holds and may not take; nothing was stored."""

    def __init__(self, errors: Sequence[tuple[str, str]], refusals: Sequence[_Refusal]) -> None:
        super().__init__(errors)
        self.refusals = list(refusals)


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
    batch's inventory nor registered to this node, when the inventory claims a GPU this node
    may not take (GpuClaimRefused: another cluster's, or one its node still reports; the
    refusal is recorded as a GpuMove), or when the batch would create more deployments than
    a node may. Raises BatchConflict when the batch id was stored with other rows.

    Round trips on PostgreSQL for a batch of GPU samples: begin, claim + inventory read (one
    statement), COPY, commit. The batch's bookkeeping row is written with its counts up
    front and only corrected when some rows turn out to be stored already. When a GPU
    sample is stored already (re-sent after an agent restart), the COPY fails, everything
    is rolled back and the batch is stored again, skipping such samples.
    """
    now = received_at or timezone.now()
    try:
        try:
            return _batch_store(node=node, batch=batch, now=now, skip_conflicts=False)
        except RowsAlreadyStored:
            return _batch_store(node=node, batch=batch, now=now, skip_conflicts=True)
    except GpuClaimRefused as exc:
        # The batch's transaction is rolled back; the refusal itself is kept for the admin.
        _claims_refused_record(node=node, refusals=exc.refusals, now=now)
        raise


def _batch_store(*, node: Node, batch: Batch, now: datetime, skip_conflicts: bool) -> IngestResult:
    samples = batch.gpu_samples
    expected = (len(samples), len(batch.engine_samples), len(batch.requests))
    with transaction.atomic():
        batch_pk, known = _batch_claim(
            node=node, batch=batch, now=now, counts=expected, span=_time_span(batch)
        )
        if batch_pk is None:
            _duplicate_check(node=node, batch=batch)
            return IngestResult(batch_id=batch.batch_id, duplicate=True)
        gpu_ids = _gpus_upsert(node=node, rows=batch.gpus, known=known, now=now)
        deployment_ids = _deployments_upsert(node=node, batch=batch, gpu_ids=gpu_ids, now=now)

        gpu_id_column = _resolve_gpu_samples(samples, gpu_ids)
        engine_rows = [(deployment_ids[row[0]], node.pk, *row[1:]) for row in batch.engine_samples]
        request_rows = [
            (deployment_ids[row[0]], *row[1:], RequestSource.PROXY) for row in batch.requests
        ]
        ts_cols = frozenset({"ts", "arrival_ts"})
        gpu_inserted = bulk_insert_columns(
            GpuSample, GPU_SAMPLE_COLUMNS, (gpu_id_column, *samples.values[1:]), len(samples),
            ts_columns=ts_cols, skip_conflicts=skip_conflicts,
        )  # fmt: skip
        engine_inserted = bulk_insert_ignoring_conflicts(
            EngineSample, ENGINE_SAMPLE_COLUMNS, engine_rows,
            ts_columns=ts_cols, json_columns=frozenset({"histograms"}),
        )  # fmt: skip
        request_inserted = bulk_insert_ignoring_conflicts(
            RequestRecord, REQUEST_COLUMNS, request_rows,
            ts_columns=ts_cols, json_columns=frozenset({"prefix_block_hashes"}),
        )  # fmt: skip
        inserted = (gpu_inserted, engine_inserted, request_inserted)
        duplicates = sum(expected) - sum(inserted)
        if duplicates:
            IngestBatch.objects.filter(pk=batch_pk).update(
                gpu_samples=gpu_inserted,
                engine_samples=engine_inserted,
                requests=request_inserted,
                duplicate_rows=duplicates,
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


# The node's GPUs and any GPU the batch reports (it may have moved from another node).
_GPU_COLUMNS = 'id, uuid, node_id, "index", model_name, memory_bytes, mig_parent_id'


@dataclass(frozen=True)
class _KnownGpu:
    id: int
    uuid: str
    node_id: int
    index: int
    model_name: str
    memory_bytes: int
    mig_parent_id: int | None


def _batch_claim(
    *,
    node: Node,
    batch: Batch,
    now: datetime,
    counts: tuple[int, int, int],
    span: tuple[float, float] | None,
) -> tuple[int | None, dict[str, _KnownGpu]]:
    """Insert the batch id (None when it is already stored, or being stored by a concurrent
    request, whose commit this waits for) and read the GPUs the batch may refer to.

    No savepoint; on PostgreSQL one statement (a data-modifying CTE), elsewhere two.
    """
    adapt = connection.ops.adapt_datetimefield_value
    table = IngestBatch._meta.db_table
    gpu_table = Gpu._meta.db_table
    claim = (
        f'INSERT INTO "{table}" (node_id, batch_id, received_at, gpu_samples, engine_samples, '
        "requests, duplicate_rows, min_ts, max_ts, rows_digest) "
        "VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s, %s) "
        "ON CONFLICT (node_id, batch_id) DO NOTHING RETURNING id"
    )
    params = [
        node.pk, batch.batch_id, adapt(now), *counts,
        adapt(_dt(span[0])) if span else None, adapt(_dt(span[1])) if span else None,
        batch.rows_digest,
    ]  # fmt: skip
    uuids = [row[_GPU["uuid"]] for row in batch.gpus]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH claim AS ({claim}) SELECT (SELECT id FROM claim), {_GPU_COLUMNS} "
                f'FROM (SELECT 1) AS one LEFT JOIN "{gpu_table}" '
                "ON node_id = %s OR uuid = ANY(%s)",
                [*params, node.pk, uuids],
            )
            rows = cursor.fetchall()
            claimed = rows[0][0]
            gpus = [row[1:] for row in rows if row[1] is not None]
        else:
            cursor.execute(claim, params)
            row = cursor.fetchone()
            claimed = row[0] if row else None
            marks = ", ".join("%s" for _ in uuids) or "NULL"
            cursor.execute(
                f'SELECT {_GPU_COLUMNS} FROM "{gpu_table}" WHERE node_id = %s OR uuid IN ({marks})',
                [node.pk, *uuids],
            )
            gpus = cursor.fetchall()
    known = {gpu[1]: _KnownGpu(*gpu) for gpu in gpus}
    return (int(claimed) if claimed is not None else None), known


def _time_span(batch: Batch) -> tuple[float, float] | None:
    """The earliest and latest instant of the batch's rows (what the rollups recompute)."""
    stamps: list[float] = []
    ts = batch.gpu_samples.column("ts")
    if ts:
        stamps += (min(ts), max(ts))
    stamps.extend(row[2] for row in batch.engine_samples)
    stamps.extend(row[1] for row in batch.requests)
    return (min(stamps), max(stamps)) if stamps else None


def _duplicate_check(*, node: Node, batch: Batch) -> None:
    """Raise BatchConflict when the stored batch of this id had other rows than this one."""
    stored = (
        IngestBatch.objects.filter(node=node, batch_id=batch.batch_id)
        .values_list("rows_digest", flat=True)
        .first()
    )
    if stored and batch.rows_digest and stored != batch.rows_digest:
        raise BatchConflict(
            f"batch id {batch.batch_id!r} was stored before with other rows; "
            "a batch id names one batch: send new rows under a new id"
        )


def _gpus_upsert(
    *, node: Node, rows: Sequence[tuple[Any, ...]], known: dict[str, _KnownGpu], now: datetime
) -> dict[str, int]:
    """Create or update the reported GPUs on this node; uuid -> id of all the node's GPUs.

    A GPU registered to another node moves here only when `_claims_check` allows it, and
    the move is recorded; otherwise GpuClaimRefused (nothing is stored).
    """
    reported = {row[_GPU["uuid"]]: row for row in rows}
    claimed = {
        uuid: known[uuid] for uuid in reported if uuid in known and known[uuid].node_id != node.pk
    }
    if claimed:
        _claims_check(node=node, rows=rows, claimed=claimed, now=now)
    node_of = {uuid: gpu.node_id for uuid, gpu in known.items()}
    ids = {uuid: gpu.id for uuid, gpu in known.items()}
    is_mig = _GPU["mig_parent_uuid"]
    # Physical GPUs first so a MIG instance can point at its parent.
    for uuid, row in sorted(reported.items(), key=lambda item: item[1][is_mig] is not None):
        parent_id = ids.get(row[is_mig]) if row[is_mig] else None
        wanted = {
            "node_id": node.pk,
            "index": row[_GPU["index"]],
            "model_name": row[_GPU["name"]],
            "memory_bytes": row[_GPU["memory_bytes"]],
            "mig_parent_id": parent_id,
        }
        current = known.get(uuid)
        if current is None:
            ids[uuid] = Gpu.objects.create(uuid=uuid, **wanted).pk
            node_of[uuid] = node.pk
        elif any(getattr(current, name) != value for name, value in wanted.items()):
            Gpu.objects.filter(pk=current.id).update(**wanted)
            node_of[uuid] = node.pk
    if claimed:
        GpuMove.objects.bulk_create(
            GpuMove(
                gpu_id=gpu.id, from_node_id=gpu.node_id, to_node=node,
                outcome=GpuMoveOutcome.MOVED, first_at=now, last_at=now,
                reason=f"reported by {node.hostname}; its old node had been silent",
            )
            for gpu in claimed.values()
        )  # fmt: skip
    return {uuid: gpu_id for uuid, gpu_id in ids.items() if node_of[uuid] == node.pk}


def _claims_check(
    *,
    node: Node,
    rows: Sequence[tuple[Any, ...]],
    claimed: Mapping[str, _KnownGpu],
    now: datetime,
) -> None:
    """Raise GpuClaimRefused unless every claimed GPU may move to `node`.

    A GPU never leaves its cluster by ingest (a node's token must not reach another
    cluster's inventory), and within the cluster it moves only once its node has not
    reported it for GPU_MOVE_QUIET. Only runs when a batch names another node's GPU.
    """
    cluster_of = dict(
        Node.objects.filter(pk__in={gpu.node_id for gpu in claimed.values()}).values_list(
            "pk", "cluster_id"
        )
    )
    position = {row[_GPU["uuid"]]: i for i, row in enumerate(rows)}
    errors: list[tuple[str, str]] = []
    refusals: list[_Refusal] = []
    for uuid, gpu in claimed.items():
        if cluster_of.get(gpu.node_id) != node.cluster_id:
            reason = (
                "registered to a node of another cluster; a GPU never moves between clusters "
                "by ingest (an admin can move it)"
            )
        else:
            last = (
                GpuSample.objects.filter(gpu_id=gpu.id)
                .order_by("-ts")
                .values_list("ts", flat=True)
                .first()
            )
            if last is None or now - last >= GPU_MOVE_QUIET:
                continue
            silent_s = max(0, int((now - last).total_seconds()))
            reason = (
                f"its node reported it {silent_s} s ago; a GPU moves to another node only "
                f"after {int(GPU_MOVE_QUIET.total_seconds())} s without samples "
                "(or an admin moves it)"
            )
        errors.append((f"gpus[{position[uuid]}].uuid", f"GPU {uuid!r} is {reason}"))
        refusals.append(_Refusal(gpu.id, gpu.node_id, reason))
    if refusals:
        raise GpuClaimRefused(errors[:MAX_ERRORS], refusals)


def _claims_refused_record(*, node: Node, refusals: Sequence[_Refusal], now: datetime) -> None:
    """Keep each refused claim: one row per GPU and claimant, counting its attempts."""
    with transaction.atomic():
        for refusal in refusals:
            updated = GpuMove.objects.filter(
                gpu_id=refusal.gpu_id, to_node=node, outcome=GpuMoveOutcome.REFUSED
            ).update(
                last_at=now,
                attempts=F("attempts") + 1,
                reason=refusal.reason[:255],
                from_node_id=refusal.from_node_id,
            )
            if not updated and Gpu.objects.filter(pk=refusal.gpu_id).exists():
                GpuMove.objects.create(
                    gpu_id=refusal.gpu_id, from_node_id=refusal.from_node_id, to_node=node,
                    outcome=GpuMoveOutcome.REFUSED, reason=refusal.reason[:255],
                    first_at=now, last_at=now,
                )  # fmt: skip


def _deployments_upsert(
    *, node: Node, batch: Batch, gpu_ids: Mapping[str, int], now: datetime
) -> dict[str, int]:
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
    new = sorted(names - set(found))
    if new:
        _deployments_bound(node=node, new=new)
    for name in new:
        row = declared.get(name)
        model_id = (row[_DEPLOYMENT["model_id"]] if row else None) or name
        deployment, _created = ModelDeployment.objects.get_or_create(
            cluster_id=node.cluster_id,
            served_name=name,
            defaults={"model_id": model_id, "created_by_node": node},
        )
        found[name] = deployment
    for name, row in declared.items():
        uuids = row[_DEPLOYMENT["gpu_uuids"]] or []
        ids = [gpu_ids[uuid] for uuid in uuids if uuid in gpu_ids]
        if ids:
            found[name].gpus.add(*ids)
        config = row[_DEPLOYMENT["hf_config"]]
        if config is not None:
            _hf_config_keep(deployment=found[name], config=config, node=node, now=now)
    return {name: deployment.pk for name, deployment in found.items()}


def _hf_config_keep(
    *, deployment: ModelDeployment, config: dict[str, Any], node: Node, now: datetime
) -> None:
    """Store the config.json the node's agent read, unless it is the one stored already.

    The latest report wins, an upload included: the agent reads what vLLM serves (it sends
    its config once per run). A config the engine cannot model is stored all the same; the
    deployment's page says why (`probes.hf_config`), the batch is never refused.
    """
    if deployment.hf_config == config:
        return
    ModelDeployment.objects.filter(pk=deployment.pk).update(
        hf_config=config, hf_config_source=f"agent {node.hostname}", hf_config_at=now
    )


def _deployments_bound(*, node: Node, new: Sequence[str]) -> None:
    """PayloadError when creating `new` deployments passes what one batch or node may create."""
    shown = ", ".join(repr(name) for name in new[:3]) + (", ..." if len(new) > 3 else "")
    if len(new) > MAX_NEW_DEPLOYMENTS_PER_BATCH:
        raise PayloadError(
            [
                (
                    "deployments",
                    f"{len(new)} served names the cluster has no deployment for ({shown}); "
                    f"one batch may create at most {MAX_NEW_DEPLOYMENTS_PER_BATCH}",
                )
            ]
        )
    created = ModelDeployment.objects.filter(created_by_node=node).count()
    if created + len(new) > MAX_DEPLOYMENTS_PER_NODE:
        raise PayloadError(
            [
                (
                    "deployments",
                    f"this node's batches created {created} deployments already; {len(new)} "
                    f"more ({shown}) would pass the limit of {MAX_DEPLOYMENTS_PER_NODE} per "
                    "node (an admin can create more, or delete unused ones)",
                )
            ]
        )


def _resolve_gpu_samples(samples: Columns, gpu_ids: Mapping[str, int]) -> list[int]:
    """The gpu_id column of the samples; PayloadError naming each unknown GPU's row."""
    uuids = samples.column("gpu_uuid") or []
    ids = list(map(gpu_ids.get, uuids))
    if None not in ids:
        return ids  # type: ignore[return-value]  # no None: checked just above
    errors: list[tuple[str, str]] = []
    for i, gpu_id in enumerate(ids):
        if gpu_id is None:
            message = (
                f"unknown GPU {uuids[i]!r}: list it in `gpus` (it is not registered to this node)"
            )
            errors.append((samples.path(i, "gpu_uuid"), message))
            if len(errors) >= MAX_ERRORS:
                break
    raise PayloadError(errors)


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
        "agent_dead_letter_batches": agent.get("dead_letter_batches"),
        "agent_dead_letter_last_error": agent.get("dead_letter_last_error"),
        "agent_dropped_prefix_hashes": agent.get("dropped_prefix_hashes"),
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
