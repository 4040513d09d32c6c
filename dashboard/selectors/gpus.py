"""Per-GPU time series for the node and GPU pages: raw samples for short windows, rollups beyond.

Resolution follows `probes.selectors.resolution_for` (raw up to 2 h, 1-minute rollups up to
3 days, 1-hour beyond). Fields a source lacks (SM activity without DCGM, temperature in
rollups) come back as None so pages show "not reported" rather than a flat zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.db.models import QuerySet

from dashboard.selectors.sql import Epoch
from dashboard.windows import Window
from probes.models import EngineSample, Gpu, GpuSample, IngestBatch, Node
from probes.selectors import gpu_rollups_in_window, gpu_samples_in_window, resolution_for

RAW_FIELDS = (
    "util_pct", "util_pct", "util_pct", "mem_used_bytes", "mem_used_bytes", "power_w",
    "sm_active", "tensor_active", "temperature_c",
)  # fmt: skip
ROLLUP_FIELDS = (
    "util_mean_pct", "util_p95_pct", "util_max_pct", "mem_used_mean_bytes", "mem_used_max_bytes",
    "power_mean_w", "sm_active_mean", None, None,
)  # fmt: skip
SERIES = (
    "util_mean_pct", "util_p95_pct", "util_max_pct", "mem_mean_bytes", "mem_max_bytes",
    "power_w", "sm_active", "tensor_active", "temperature_c",
)  # fmt: skip


@dataclass(frozen=True)
class GpuSeries:
    """One GPU's series over a window; arrays share `epoch_s`; a missing field is None."""

    gpu: Gpu
    resolution: str | None  # None: raw samples
    epoch_s: np.ndarray
    values: dict[str, np.ndarray | None]

    @property
    def times(self) -> list[str]:
        return [datetime.fromtimestamp(t, UTC).isoformat() for t in self.epoch_s]

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name)

    def mean(self, name: str) -> float | None:
        values = self.values.get(name)
        if values is None or values.size == 0 or np.isnan(values).all():
            return None
        return float(np.nanmean(values))

    def peak(self, name: str) -> float | None:
        values = self.values.get(name)
        if values is None or values.size == 0 or np.isnan(values).all():
            return None
        return float(np.nanmax(values))

    def p95(self, name: str) -> float | None:
        values = self.values.get(name)
        if values is None or values.size == 0 or np.isnan(values).all():
            return None
        return float(np.nanpercentile(values, 95))


def gpu_series(*, gpus: list[Gpu], window: Window) -> list[GpuSeries]:
    """Series of each GPU in `gpus` over `window` (one query for all of them)."""
    resolution = resolution_for(start=window.start, end=window.end)
    ids = [gpu.pk for gpu in gpus]
    if resolution is None:
        fields: tuple[str | None, ...] = RAW_FIELDS
        queryset: QuerySet[Any] = gpu_samples_in_window(
            gpu_ids=ids, start=window.start, end=window.end
        )
        stamp = "ts"
    else:
        fields = ROLLUP_FIELDS
        queryset = gpu_rollups_in_window(
            gpu_ids=ids, resolution=resolution, start=window.start, end=window.end
        )
        stamp = "bucket_start"
    present = [f for f in dict.fromkeys(fields) if f is not None]
    rows = list(queryset.annotate(epoch=Epoch(stamp)).values_list("gpu_id", "epoch", *present))
    data = np.array(
        [[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64
    ).reshape(-1, 2 + len(present))
    column = {name: 2 + i for i, name in enumerate(present)}
    result = []
    for gpu in gpus:
        mine = data[data[:, 0] == gpu.pk]
        values: dict[str, np.ndarray | None] = {}
        for series, source in zip(SERIES, fields, strict=True):
            if source is None:
                values[series] = None
                continue
            array = mine[:, column[source]]
            values[series] = None if array.size and np.isnan(array).all() else array
        result.append(GpuSeries(gpu, resolution, mine[:, 1], values))
    return result


def latest_samples(*, gpus: list[Gpu]) -> dict[int, GpuSample]:
    """Each GPU's most recent raw sample (a backward scan of the (gpu, ts) index per GPU)."""
    latest = {}
    for gpu in gpus:
        sample = GpuSample.objects.filter(gpu=gpu).order_by("-ts").first()
        if sample is not None:
            latest[gpu.pk] = sample
    return latest


@dataclass(frozen=True)
class LastSeen:
    """When a node was last heard from, and by what ("GPU sample", "agent report", ...)."""

    at: datetime
    by: str


def node_last_seen(*, node: Node, latest: dict[int, GpuSample]) -> LastSeen | None:
    """The newest of the node's own report time, its GPUs' newest samples (`latest`, from
    `latest_samples`), its newest vLLM sample and its newest ingest batch; None when there is
    none. Telemetry written without an agent report (imported, or the demo's) counts too."""
    seen = [LastSeen(node.last_seen, "agent report")] if node.last_seen else []
    seen += [LastSeen(sample.ts, "GPU sample") for sample in latest.values()]
    engine = EngineSample.objects.filter(node=node).order_by("-ts").values_list("ts").first()
    if engine:
        seen.append(LastSeen(engine[0], "vLLM sample"))
    batch = (
        IngestBatch.objects.filter(node=node)
        .order_by("-received_at")
        .values_list("received_at")
        .first()
    )
    if batch:
        seen.append(LastSeen(batch[0], "ingest batch"))
    return max(seen, key=lambda s: s.at, default=None)
