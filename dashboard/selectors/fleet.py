"""Fleet overview: utilization, idle GPU-hours and their cost, wastes, and the heatmap.

Reads GPU rollups only: 1-minute buckets while the window holds at most 50k GPU-minutes
(100 GPUs: 8 hours), 1-hour buckets beyond (100 GPUs x 30 days is 72k hour rows instead of
4.3M minute rows). One query fetches
(gpu, bucket, mean, idle minutes) as numbers through the (resolution, bucket_start) index
and numpy does the rest, so the page costs the same on PostgreSQL and SQLite.

The words are defined once in `dashboard.glossary` (shown on the page and in the README):
utilization of a bucket is the mean of its samples (fleet mean weighted by time, p95 over
all GPU-buckets of the window); idle GPU-hours are idle minutes (`probes.models.
IDLE_UTIL_PCT`), which every rollup counts at minute resolution, so a window read from hour
rollups counts the same idle time as one read from minute rollups; unused GPU-hours are
(1 - utilization) x bucket duration; cost is GPU-hours x the price sheet's $/GPU-hour, and
GPUs without a price sheet row are listed apart, never priced here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property

import numpy as np
from django.utils import timezone

from dashboard.pricing import GpuPrice, prices_for
from dashboard.selectors.sql import Epoch, fetch_array
from dashboard.windows import Window
from probes.models import (
    Cluster,
    Gpu,
    GpuRollup,
    ModelDeployment,
    RollupResolution,
)

# Minute rollups while the window holds at most this many GPU-minutes (100 GPUs: 8 hours),
# hour rollups beyond: the page reads at most ~50k rows whatever the fleet's size.
MINUTE_ROWS_UP_TO = 50_000
HEATMAP_MAX_COLUMNS = 360
TOP_WASTES = 10
BUCKET_S: dict[str, int] = {RollupResolution.MINUTE: 60, RollupResolution.HOUR: 3600}


@dataclass(frozen=True)
class GpuUsage:
    gpu_id: int
    node_id: int
    hostname: str
    index: int
    model_name: str
    price: GpuPrice
    is_mig: bool
    deployments: tuple[str, ...]
    observed_hours: float = 0.0
    util_mean_pct: float | None = None
    util_p95_pct: float | None = None
    idle_hours: float = 0.0
    unused_hours: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.hostname}:{self.index}"

    @property
    def usd_per_hour(self) -> float | None:
        # A MIG instance's hours are paid on its parent GPU: counting both would double it.
        return None if self.is_mig else self.price.usd_per_gpu_hour

    def cost(self, hours: float) -> float | None:
        price = self.usd_per_hour
        return None if price is None else hours * price

    @property
    def cost_usd(self) -> float | None:
        return self.cost(self.observed_hours)

    @property
    def idle_cost_usd(self) -> float | None:
        return self.cost(self.idle_hours)

    @property
    def unused_cost_usd(self) -> float | None:
        return self.cost(self.unused_hours)


@dataclass(frozen=True)
class Unpriced:
    """GPUs of one kind without a price sheet row (their hours are not in dollar totals)."""

    label: str
    gpus: int
    observed_hours: float
    idle_hours: float


@dataclass(frozen=True)
class DeploymentUsage:
    name: str
    gpus: int
    util_mean_pct: float | None
    idle_hours: float
    idle_cost_usd: float | None
    unused_cost_usd: float | None


@dataclass(frozen=True)
class Heatmap:
    gpu_labels: tuple[str, ...]
    gpu_ids: tuple[int, ...]
    column_starts: tuple[datetime, ...]
    column_s: int
    util_pct: np.ndarray  # (gpus, columns) float32, NaN where no data


@dataclass(frozen=True)
class FleetOverview:
    window: Window
    cluster: Cluster | None
    resolution: str
    bucket_s: int
    gpus: tuple[GpuUsage, ...]
    heatmap: Heatmap
    util_mean_pct: float | None
    util_p95_pct: float | None
    util_histogram: np.ndarray  # GPU-buckets per 5%-wide utilization band (20)
    latest_bucket: datetime | None
    unpriced: tuple[Unpriced, ...] = field(default=())

    @cached_property
    def gpu_count(self) -> int:
        return sum(1 for gpu in self.gpus if not gpu.is_mig)

    @cached_property
    def gpus_reporting(self) -> int:
        return sum(1 for gpu in self.gpus if gpu.observed_hours > 0)

    @cached_property
    def observed_gpu_hours(self) -> float:
        return sum(gpu.observed_hours for gpu in self.gpus if not gpu.is_mig)

    @cached_property
    def coverage(self) -> float | None:
        """Observed GPU-hours / the GPU-hours the window holds (telemetry completeness)."""
        possible = self.gpu_count * self.window.hours
        return self.observed_gpu_hours / possible if possible > 0 else None

    @cached_property
    def idle_gpu_hours(self) -> float:
        return sum(gpu.idle_hours for gpu in self.gpus if not gpu.is_mig)

    @cached_property
    def unused_gpu_hours(self) -> float:
        return sum(gpu.unused_hours for gpu in self.gpus if not gpu.is_mig)

    def _priced_sum(self, attr: str) -> float | None:
        values = [getattr(gpu, attr) for gpu in self.gpus]
        known = [value for value in values if value is not None]
        return sum(known) if known else None

    @cached_property
    def cost_usd(self) -> float | None:
        return self._priced_sum("cost_usd")

    @cached_property
    def idle_cost_usd(self) -> float | None:
        return self._priced_sum("idle_cost_usd")

    @cached_property
    def unused_cost_usd(self) -> float | None:
        return self._priced_sum("unused_cost_usd")

    @cached_property
    def wastes(self) -> tuple[GpuUsage, ...]:
        """The GPUs wasting most: by idle cost, then (unpriced ones) by idle hours."""
        wasting = [gpu for gpu in self.gpus if gpu.idle_hours > 0 or gpu.unused_hours > 0]
        wasting.sort(
            key=lambda g: (g.idle_cost_usd or 0.0, g.unused_cost_usd or 0.0, g.idle_hours),
            reverse=True,
        )
        return tuple(wasting[:TOP_WASTES])

    @cached_property
    def by_deployment(self) -> tuple[DeploymentUsage, ...]:
        groups: dict[str, list[GpuUsage]] = {}
        for gpu in self.gpus:
            for name in gpu.deployments or ("(no deployment)",):
                groups.setdefault(name, []).append(gpu)
        rows = []
        for name, members in groups.items():
            hours = sum(g.observed_hours for g in members)
            util = (
                sum((g.util_mean_pct or 0.0) * g.observed_hours for g in members) / hours
                if hours > 0
                else None
            )
            idle_costs = [g.idle_cost_usd for g in members if g.idle_cost_usd is not None]
            unused = [g.unused_cost_usd for g in members if g.unused_cost_usd is not None]
            rows.append(
                DeploymentUsage(
                    name=name,
                    gpus=len(members),
                    util_mean_pct=util,
                    idle_hours=sum(g.idle_hours for g in members),
                    idle_cost_usd=sum(idle_costs) if idle_costs else None,
                    unused_cost_usd=sum(unused) if unused else None,
                )
            )
        rows.sort(key=lambda r: (r.unused_cost_usd or 0.0, r.idle_hours), reverse=True)
        return tuple(rows)


def resolution_for_fleet(window: Window, gpus: int) -> str:
    minutes = window.span.total_seconds() / 60.0
    if max(gpus, 1) * minutes <= MINUTE_ROWS_UP_TO:
        return RollupResolution.MINUTE
    return RollupResolution.HOUR


def fleet_overview(*, window: Window, cluster: Cluster | None = None) -> FleetOverview:
    """Everything the fleet page and the fleet report show for `window` (one cluster or all)."""
    inventory = _inventory(cluster)
    gpu_ids = [gpu.gpu_id for gpu in inventory]
    only = gpu_ids if cluster is not None else None
    resolution = resolution_for_fleet(window, len(inventory))
    data = _rollup_rows(window, resolution, only)
    if data.size == 0 and resolution == RollupResolution.MINUTE:
        # Minute rollups are kept 90 days, hour rollups two years: an old window falls back.
        resolution = RollupResolution.HOUR
        data = _rollup_rows(window, resolution, only)
    bucket_s = BUCKET_S[resolution]
    grid = _Grid.of(window, bucket_s)

    # GPU id -> row of the inventory, vectorised (a dict lookup per row costs 20 ms at 70k).
    row_of = np.full(max(gpu_ids, default=0) + 1, -1, dtype=np.int64)
    row_of[gpu_ids] = np.arange(len(gpu_ids))
    ids = data[:, 0].astype(np.int64)
    known = ids < row_of.size
    known[known] = row_of[ids[known]] >= 0
    data = data[known]
    rows = row_of[data[:, 0].astype(np.int64)]
    epoch, util = data[:, 1], data[:, 2]
    # The bucket in progress (or cut by the window's end) counts only for its elapsed part.
    duration_h = (np.minimum(epoch + bucket_s, grid.limit_s) - epoch).clip(min=0) / 3600.0
    idle_h = np.minimum(data[:, 3] / 60.0, duration_h)

    n = len(inventory)
    observed = np.bincount(rows, weights=duration_h, minlength=n)
    util_time = np.bincount(rows, weights=util * duration_h, minlength=n)
    idle = np.bincount(rows, weights=idle_h, minlength=n)
    unused = np.bincount(rows, weights=duration_h * (1.0 - util.clip(0, 100) / 100.0), minlength=n)
    p95 = _group_percentile(rows, util, n, 95.0)

    gpus = tuple(
        replace(
            base,
            observed_hours=float(observed[i]),
            util_mean_pct=float(util_time[i] / observed[i]) if observed[i] > 0 else None,
            util_p95_pct=None if math.isnan(p95[i]) else float(p95[i]),
            idle_hours=float(idle[i]),
            unused_hours=float(unused[i]),
        )
        for i, base in enumerate(inventory)
    )
    total_h = float(duration_h.sum())
    histogram, _edges = np.histogram(util.clip(0, 100), bins=20, range=(0.0, 100.0))
    return FleetOverview(
        window=window,
        cluster=cluster,
        resolution=resolution,
        bucket_s=bucket_s,
        gpus=gpus,
        heatmap=_heatmap(gpus, rows, epoch, util, grid),
        util_mean_pct=float((util * duration_h).sum() / total_h) if total_h > 0 else None,
        util_p95_pct=float(np.percentile(util, 95)) if util.size else None,
        util_histogram=histogram.astype(np.float64),
        latest_bucket=_latest_bucket(only),
        unpriced=_unpriced(gpus),
    )


@dataclass(frozen=True)
class _Grid:
    """The window cut into heatmap columns of whole buckets."""

    start_s: float  # the window's start, floored to a bucket
    limit_s: float  # buckets count up to here: the window's end, or now if earlier
    bucket_s: int
    column_s: int
    columns: int

    @classmethod
    def of(cls, window: Window, bucket_s: int) -> _Grid:
        start_s = math.floor(window.start.timestamp() / bucket_s) * bucket_s
        end_s = window.end.timestamp()
        buckets = max(1, math.ceil((end_s - start_s) / bucket_s))
        per_column = math.ceil(buckets / HEATMAP_MAX_COLUMNS)
        limit_s = min(end_s, timezone.now().timestamp())
        columns = math.ceil(buckets / per_column)
        return cls(start_s, limit_s, bucket_s, per_column * bucket_s, columns)


def _rollup_rows(window: Window, resolution: str, gpu_ids: list[int] | None) -> np.ndarray:
    """(gpu_id, bucket start as epoch s, mean utilization, idle minutes) of the window's buckets.

    Fetched as plain numbers and summed by numpy: on PostgreSQL this beat summing per heatmap
    cell in SQL (a sort + group of every row) by 4x for 100 GPUs x 30 days.
    """
    bucket_s = BUCKET_S[resolution]
    start_s = math.floor(window.start.timestamp() / bucket_s) * bucket_s
    rollups = GpuRollup.objects.filter(
        resolution=resolution,
        bucket_start__gte=datetime.fromtimestamp(start_s, UTC),
        bucket_start__lt=window.end,
    )
    if gpu_ids is not None:
        rollups = rollups.filter(gpu_id__in=gpu_ids)
    return fetch_array(
        rollups.annotate(epoch=Epoch("bucket_start")),
        ("gpu_id", "epoch", "util_mean_pct", "idle_minutes"),
    )


def _inventory(cluster: Cluster | None) -> list[GpuUsage]:
    gpus = Gpu.objects.select_related("node").order_by("node__hostname", "node_id", "index")
    if cluster is not None:
        gpus = gpus.filter(node__cluster=cluster)
    rows = list(
        gpus.values_list("id", "node_id", "node__hostname", "index", "model_name", "mig_parent_id")
    )
    served: dict[int, list[str]] = {}
    through = ModelDeployment.gpus.through.objects.filter(gpu_id__in=[r[0] for r in rows])
    for gpu_id, name in through.values_list("gpu_id", "modeldeployment__served_name"):
        served.setdefault(gpu_id, []).append(name)
    prices = prices_for({r[4] for r in rows})
    return [
        GpuUsage(
            gpu_id=gpu_id,
            node_id=node_id,
            hostname=hostname,
            index=index,
            model_name=model_name,
            price=prices[model_name],
            is_mig=mig_parent is not None,
            deployments=tuple(sorted(served.get(gpu_id, ()))),
        )
        for gpu_id, node_id, hostname, index, model_name, mig_parent in rows
    ]


def _group_percentile(rows: np.ndarray, values: np.ndarray, n: int, q: float) -> np.ndarray:
    """The q-th percentile (linear, as numpy's default) of `values` within each row group."""
    result = np.full(n, np.nan)
    if rows.size == 0:
        return result
    order = np.lexsort((values, rows))
    sorted_rows, sorted_values = rows[order], values[order]
    starts = np.searchsorted(sorted_rows, np.arange(n), side="left")
    ends = np.searchsorted(sorted_rows, np.arange(n), side="right")
    counts = ends - starts
    has = counts > 0
    position = starts[has] + (counts[has] - 1) * q / 100.0
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, ends[has] - 1)
    frac = position - low
    result[has] = sorted_values[low] * (1 - frac) + sorted_values[high] * frac
    return result


def _heatmap(
    gpus: tuple[GpuUsage, ...],
    rows: np.ndarray,
    epoch: np.ndarray,
    util: np.ndarray,
    grid: _Grid,
) -> Heatmap:
    n, columns = len(gpus), grid.columns
    col = ((epoch - grid.start_s) // grid.column_s).astype(np.int64).clip(0, columns - 1)
    flat = rows * columns + col
    sums = np.bincount(flat, weights=util, minlength=n * columns)
    counts = np.bincount(flat, minlength=n * columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Heatmap(
        gpu_labels=tuple(gpu.label for gpu in gpus),
        gpu_ids=tuple(gpu.gpu_id for gpu in gpus),
        column_starts=tuple(
            datetime.fromtimestamp(grid.start_s + i * grid.column_s, UTC) for i in range(columns)
        ),
        column_s=grid.column_s,
        util_pct=z.reshape(n, columns).astype(np.float32),
    )


def _latest_bucket(gpu_ids: list[int] | None) -> datetime | None:
    """When the newest rollup (either resolution) ends: where the telemetry stops."""
    ends = []
    for resolution, size in BUCKET_S.items():
        # Backward scan of the (resolution, bucket_start) index: cheap even on 4M rows.
        rollups = GpuRollup.objects.filter(resolution=resolution)
        if gpu_ids is not None:
            rollups = rollups.filter(gpu_id__in=gpu_ids)
        latest = rollups.order_by("-bucket_start").values_list("bucket_start", flat=True).first()
        if latest is not None:
            ends.append(latest + timedelta(seconds=size))
    return max(ends, default=None)


def _unpriced(gpus: tuple[GpuUsage, ...]) -> tuple[Unpriced, ...]:
    groups: dict[str, list[GpuUsage]] = {}
    for gpu in gpus:
        if gpu.price.usd_per_gpu_hour is None and not gpu.is_mig:
            groups.setdefault(gpu.price.label, []).append(gpu)
    return tuple(
        Unpriced(
            label=label,
            gpus=len(members),
            observed_hours=sum(g.observed_hours for g in members),
            idle_hours=sum(g.idle_hours for g in members),
        )
        for label, members in sorted(groups.items())
    )
