"""Synthetic GPU rollups for the demo fleet, the dashboard benchmark and the browser tests.

Not telemetry: a deterministic stand-in (seeded numpy Generator) whose shape resembles an
inference fleet (a daily load cycle, some GPUs busy, some lightly used, some idle) so pages
and the benchmark have realistic volumes. Rows go in with COPY on PostgreSQL through
`probes.services.bulk`, in chunks, so 100 GPUs x 30 days of minute rollups (4.3M rows) take
about a minute rather than an hour of ORM saves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import transaction

from probes.models import (
    IDLE_UTIL_PCT,
    Cluster,
    Gpu,
    GpuRollup,
    ModelDeployment,
    Node,
    RollupResolution,
)
from probes.services.bulk import bulk_insert_ignoring_conflicts

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEMORY_BYTES = 81559 * 2**20
# Rows per COPY: ~120 bytes each in the staging buffer, so ~25 MB per chunk.
CHUNK_ROWS = 200_000
COLUMNS = (
    "gpu_id", "resolution", "bucket_start", "sample_count", "util_mean_pct", "util_p95_pct",
    "util_max_pct", "mem_used_mean_bytes", "mem_used_max_bytes", "power_mean_w",
    "sm_active_mean", "idle_minutes",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticFleet:
    cluster: Cluster
    gpus: tuple[Gpu, ...]
    deployments: tuple[ModelDeployment, ...]


def fleet_create(
    *,
    cluster_name: str = "synthetic",
    nodes: int = 2,
    gpus_per_node: int = 8,
    model_name: str = H100_NAME,
    memory_bytes: int = H100_MEMORY_BYTES,
    deployment_names: Sequence[str] = ("llama-70b", "qwen-7b"),
) -> SyntheticFleet:
    """A cluster of `nodes` x `gpus_per_node` GPUs, the deployments spread over the nodes."""
    with transaction.atomic():
        cluster, _ = Cluster.objects.get_or_create(name=cluster_name)
        gpus: list[Gpu] = []
        for n in range(nodes):
            node, _ = Node.objects.get_or_create(
                cluster=cluster, hostname=f"{cluster_name}-{n:03d}"
            )
            for i in range(gpus_per_node):
                gpu, _ = Gpu.objects.get_or_create(
                    uuid=f"GPU-{cluster_name}-{n:03d}-{i}",
                    defaults={
                        "node": node,
                        "index": i,
                        "model_name": model_name,
                        "memory_bytes": memory_bytes,
                    },
                )
                gpus.append(gpu)
        deployments = []
        for d, name in enumerate(deployment_names):
            deployment, _ = ModelDeployment.objects.get_or_create(
                cluster=cluster, served_name=name, defaults={"model_id": name}
            )
            deployment.gpus.set(gpus[d :: len(deployment_names)])
            deployments.append(deployment)
    return SyntheticFleet(cluster, tuple(gpus), tuple(deployments))


def load_levels(count: int, rng: np.random.Generator) -> np.ndarray:
    """Each GPU's mean load 0..1: a fifth idle, a third light, the rest busy."""
    kinds = rng.choice(3, size=count, p=[0.2, 0.35, 0.45])
    return np.where(kinds == 0, 0.0, np.where(kinds == 1, rng.uniform(0.05, 0.3, count),
                                              rng.uniform(0.45, 0.9, count)))  # fmt: skip


def rollups_create(
    *,
    gpus: Sequence[Gpu],
    start: datetime,
    end: datetime,
    seed: int = 7,
    minutes: bool = True,
    hours: bool = True,
) -> int:
    """Minute and/or hour rollups of every GPU over [start, end); returns rows written."""
    rng = np.random.default_rng(seed)
    levels = load_levels(len(gpus), rng)
    written = 0
    with transaction.atomic():
        chunk: list[tuple[object, ...]] = []
        for row in _rows(gpus, levels, start, end, rng, minutes=minutes, hours=hours):
            chunk.append(row)
            if len(chunk) >= CHUNK_ROWS:
                written += _insert(chunk)
                chunk = []
        written += _insert(chunk)
    return written


def _insert(chunk: list[tuple[object, ...]]) -> int:
    return bulk_insert_ignoring_conflicts(
        GpuRollup, COLUMNS, chunk, ts_columns=frozenset({"bucket_start"})
    )


def _rows(
    gpus: Sequence[Gpu],
    levels: np.ndarray,
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
    *,
    minutes: bool,
    hours: bool,
) -> Iterator[tuple[object, ...]]:
    t0 = int(start.timestamp()) // 3600 * 3600
    t1 = int(end.timestamp()) // 60 * 60
    minute_ts = np.arange(t0, t1, 60, dtype=np.int64)
    if minute_ts.size == 0:
        return
    # A daily cycle peaking mid-afternoon UTC, shared by the fleet.
    day = 0.55 + 0.45 * np.sin((minute_ts % 86400) / 86400.0 * 2 * np.pi - np.pi / 2)
    for gpu, level in zip(gpus, levels, strict=True):
        if level == 0.0:
            util = np.zeros(minute_ts.size)
        else:
            noise = rng.normal(0.0, 6.0, minute_ts.size)
            util = (100.0 * level * day + noise).clip(0.0, 100.0)
            # Quiet stretches: a light GPU drops to idle for whole hours at night.
            util[(day < 0.25) & (level < 0.3)] = 0.0
        p95 = (util * 1.08 + 2.0).clip(0.0, 100.0)
        peak = (util * 1.15 + 4.0).clip(0.0, 100.0)
        memory = (gpu.memory_bytes * (0.2 + 0.7 * level) + util * 1e7).astype(np.int64)
        power = 70.0 + 6.3 * util
        sm_active = util / 100.0 * 0.8
        idle = peak < IDLE_UTIL_PCT
        if minutes:
            for i in range(minute_ts.size):
                yield (
                    gpu.pk, RollupResolution.MINUTE, float(minute_ts[i]), 12,
                    round(float(util[i]), 2), round(float(p95[i]), 2), round(float(peak[i]), 2),
                    int(memory[i]), int(memory[i]), round(float(power[i]), 1),
                    round(float(sm_active[i]), 4), int(idle[i]),
                )  # fmt: skip
        if hours:
            per_hour = 60
            whole = minute_ts.size // per_hour * per_hour
            for h in range(0, whole, per_hour):
                part = slice(h, h + per_hour)
                yield (
                    gpu.pk, RollupResolution.HOUR, float(minute_ts[h]), 12 * per_hour,
                    round(float(util[part].mean()), 2),
                    round(float(np.percentile(util[part], 95)), 2),
                    round(float(peak[part].max()), 2),
                    int(memory[part].mean()), int(memory[part].max()),
                    round(float(power[part].mean()), 1), round(float(sm_active[part].mean()), 4),
                    int(idle[part].sum()),
                )  # fmt: skip
