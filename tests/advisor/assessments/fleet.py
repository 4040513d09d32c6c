"""A small fleet with known telemetry for assessment tests and the e2e benchmark.

GPU samples are synthesized here (integer utilization like NVML reports, a daily cycle per
GPU) and written with the probes' bulk COPY path; the Azure conversation trace is imported
through the probes' import service as it is (its 2023 timestamps), and the window ends on the
hour after its last request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from probes.models import (
    Cluster,
    Gpu,
    GpuRollup,
    GpuSample,
    ModelDeployment,
    Node,
    PriceSheet,
    TraceFormat,
)
from probes.services import import_trace
from probes.services.bulk import bulk_insert_ignoring_conflicts

AZURE_CONV = (
    Path(settings.BASE_DIR) / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
)
# The conversation trace runs 2023-11-16 18:15 .. 19:14 UTC; windows end on the next hour.
TRACE_END = datetime(2023, 11, 16, 20, 0, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"
H100_MEMORY = 81559 * 2**20
PRICE_USD = Decimal("4.2500")
SAMPLE_COLUMNS = ("gpu_id", "ts", "util_pct", "mem_used_bytes", "power_w")
CHUNK = 200_000  # rows per COPY (~25 MB staged)


@dataclass(frozen=True)
class LabFleet:
    cluster: Cluster
    gpus: tuple[Gpu, ...]
    chat: ModelDeployment  # the trace + 7 days of samples
    sparse: ModelDeployment  # 2 h of samples, no request records
    util: dict[int, np.ndarray]  # the utilization written per GPU (integers)


def fleet_build(
    *,
    name: str = "lab",
    nodes: int = 2,
    gpus_per_node: int = 2,
    sparse_gpus: int = 1,
    days: float = 7.0,
    interval_s: int = 60,
    end: datetime = TRACE_END,
    seed: int = 3,
    rollups: bool = True,
) -> LabFleet:
    """GPUs, a priced H100 sheet row, `chat` (the trace) and `sparse` (2 h only) deployments."""
    with transaction.atomic():
        cluster = Cluster.objects.create(name=name)
        gpus = []
        for n in range(nodes):
            node = Node.objects.create(cluster=cluster, hostname=f"{name}-{n}")
            for i in range(gpus_per_node):
                gpus.append(
                    Gpu.objects.create(
                        node=node, uuid=f"GPU-{name}-{n}-{i}", index=i, model_name=H100,
                        memory_bytes=H100_MEMORY,
                    )
                )  # fmt: skip
        PriceSheet.objects.update_or_create(
            gpu_kind="H100-SXM",
            defaults={"usd_per_gpu_hour": PRICE_USD, "source": "test contract",
                      "as_of": date(2023, 11, 1)},
        )  # fmt: skip
        chat = ModelDeployment.objects.create(
            cluster=cluster, served_name="chat", model_id="meta-llama/Llama-3-8B-Instruct",
            engine_args={"max_num_seqs": 256, "max_num_batched_tokens": 8192},
            replicas=len(gpus) - sparse_gpus,  # one GPU each (no tensor_parallel_size given)
        )  # fmt: skip
        sparse = ModelDeployment.objects.create(
            cluster=cluster, served_name="llama-8b", model_id="meta-llama/Llama-3-8B"
        )
        chat.gpus.set(gpus[: len(gpus) - sparse_gpus])
        sparse.gpus.set(gpus[len(gpus) - sparse_gpus :])
    util: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days)
    for gpu in gpus[: len(gpus) - sparse_gpus]:
        util[gpu.pk] = samples_write(gpu=gpu, start=start, end=end, interval_s=interval_s, rng=rng)
    for gpu in gpus[len(gpus) - sparse_gpus :]:
        util[gpu.pk] = samples_write(
            gpu=gpu, start=end - timedelta(hours=2), end=end, interval_s=interval_s, rng=rng
        )
    if rollups:
        # What the probes' beat task writes every minute in production (vectorized here:
        # the service's per-bucket loop takes 20 s for a small test fleet).
        with transaction.atomic():
            for gpu in gpus:
                rollups_write(gpu=gpu, util=util[gpu.pk], end=end, interval_s=interval_s)
    report = import_trace(deployment=chat, file=AZURE_CONV, format=TraceFormat.AZURE)
    assert report.ok, report.summary()
    return LabFleet(cluster, tuple(gpus), chat, sparse, util)


ROLLUP_COLUMNS = (
    "gpu_id", "resolution", "bucket_start", "sample_count", "util_mean_pct", "util_p95_pct",
    "util_max_pct", "mem_used_mean_bytes", "mem_used_max_bytes", "power_mean_w",
)  # fmt: skip


def rollups_write(*, gpu: Gpu, util: np.ndarray, end: datetime, interval_s: int) -> int:
    """Minute and hour rollups of samples written by `samples_write` (ending at `end`)."""
    written = 0
    t0 = int(end.timestamp()) - util.size * interval_s
    for resolution, width_s in (("1m", 60), ("1h", 3600)):
        if width_s < interval_s:
            continue  # sparser samples than the bucket: no rollups at that resolution
        per = width_s // interval_s
        whole = util.size // per * per
        grid = util[:whole].reshape(-1, per).astype(float)
        memory = (gpu.memory_bytes * 0.6 + grid * 1e7).astype(np.int64)
        rows = [
            (gpu.pk, resolution, float(t0 + i * width_s), per, float(grid[i].mean()),
             float(np.percentile(grid[i], 95)), float(grid[i].max()), int(memory[i].mean()),
             int(memory[i].max()), float((80.0 + 6.0 * grid[i]).mean()))
            for i in range(grid.shape[0])
        ]  # fmt: skip
        written += bulk_insert_ignoring_conflicts(
            GpuRollup, ROLLUP_COLUMNS, rows, ts_columns=frozenset({"bucket_start"})
        )
    return written


def samples_write(
    *, gpu: Gpu, start: datetime, end: datetime, interval_s: int, rng: np.random.Generator
) -> np.ndarray:
    """Integer utilization every `interval_s` over [start, end): a daily cycle plus noise."""
    t0 = int(start.timestamp())
    ts = np.arange(t0, int(end.timestamp()), interval_s, dtype=np.int64)
    level = rng.uniform(0.3, 0.8)
    day = 0.5 + 0.5 * np.sin((ts % 86400) / 86400.0 * 2 * np.pi - np.pi / 2)
    util = np.clip(np.rint(100 * level * day + rng.normal(0, 5, ts.size)), 0, 100).astype(np.int64)
    memory = (gpu.memory_bytes * 0.6 + util * 1e7).astype(np.int64)
    power = 80.0 + 6.0 * util
    rows = [
        (gpu.pk, float(ts[i]), float(util[i]), int(memory[i]), float(power[i]))
        for i in range(ts.size)
    ]
    with transaction.atomic():
        for at in range(0, len(rows), CHUNK):
            bulk_insert_ignoring_conflicts(
                GpuSample, SAMPLE_COLUMNS, rows[at : at + CHUNK], ts_columns=frozenset({"ts"})
            )
    return util
