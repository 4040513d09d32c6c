"""What the telemetry says a cluster's GPUs did over a window: utilization, GPU-hours, cost.

Measured, never simulated: an assessment shows these beside the engine's simulated baseline,
and the gap between them says how well the engine reproduces today before it predicts.

Per GPU, raw samples are used from the first one in the window on (each sample counts once,
so the mean is exactly the mean of the samples), and hour rollups (sample-count weighted,
which is the same mean) for the whole hours before it, e.g. where raw samples are past their
retention or, as in the demo, only rollups exist. A GPU-hour is an hour of the window in
which the GPU reported at least once; cost is GPU-hours times the GPU kind's price.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import TruncHour

from probes.models import GpuRollup, GpuSample, RollupResolution

HOURS_PER_MONTH = 730.0  # 365 * 24 / 12


@dataclass(frozen=True)
class GpuTelemetry:
    """One GPU's samples in the window: how many, their utilization sum, hours covered."""

    gpu_id: int
    sample_count: int = 0
    util_sum_pct: float = 0.0
    hours_observed: int = 0
    sources: tuple[str, ...] = ()

    @property
    def util_mean_pct(self) -> float | None:
        return self.util_sum_pct / self.sample_count if self.sample_count else None


def gpu_telemetry_in_window(
    *, gpu_ids: list[int], start: datetime, end: datetime
) -> dict[int, GpuTelemetry]:
    """Per GPU id (every id given, empty when it reported nothing): samples, then rollups."""
    raw = (
        GpuSample.objects.filter(gpu_id__in=gpu_ids, ts__gte=start, ts__lt=end)
        .values("gpu_id")
        .annotate(
            n=Count("ts"),
            util=Sum("util_pct"),
            first=Min("ts"),
            hours=Count(TruncHour("ts"), distinct=True),
        )
    )
    found: dict[int, GpuTelemetry] = {}
    rollups_until: dict[int, datetime] = dict.fromkeys(gpu_ids, end)
    for row in raw:
        first: datetime = row["first"]
        found[row["gpu_id"]] = GpuTelemetry(
            row["gpu_id"], int(row["n"]), float(row["util"]), int(row["hours"]), ("samples",)
        )
        rollups_until[row["gpu_id"]] = first.replace(minute=0, second=0, microsecond=0)
    by_cutoff: dict[datetime, list[int]] = defaultdict(list)
    for gpu_id, cutoff in rollups_until.items():
        if cutoff > start:
            by_cutoff[cutoff].append(gpu_id)
    if by_cutoff:
        which = Q()
        for cutoff, ids in by_cutoff.items():
            which |= Q(gpu_id__in=ids, bucket_start__lt=cutoff)
        rollups = (
            GpuRollup.objects.filter(which, resolution=RollupResolution.HOUR)
            .filter(bucket_start__gte=start)
            .values("gpu_id")
            .annotate(
                n=Sum("sample_count"),
                util=Sum(F("util_mean_pct") * F("sample_count")),
                hours=Count("id"),
            )
        )
        for agg in rollups:
            if not agg["n"]:
                continue
            before = found.get(agg["gpu_id"], GpuTelemetry(agg["gpu_id"]))
            found[agg["gpu_id"]] = GpuTelemetry(
                agg["gpu_id"],
                before.sample_count + int(agg["n"]),
                before.util_sum_pct + float(agg["util"]),
                before.hours_observed + int(agg["hours"]),
                ("hour rollups", *before.sources),
            )
    return {gpu_id: found.get(gpu_id, GpuTelemetry(gpu_id)) for gpu_id in gpu_ids}


@dataclass(frozen=True)
class MeasuredUsage:
    """A group of GPUs (a deployment, or the whole cluster) as the telemetry saw it."""

    gpu_count: int
    gpus_reporting: int
    sample_count: int
    util_mean_pct: float | None
    gpu_hours: float
    cost_usd: float
    window_hours: float
    unpriced_gpu_hours: float = 0.0
    sources: tuple[str, ...] = field(default=())

    @property
    def usd_per_hour(self) -> float:
        return self.cost_usd / self.window_hours if self.window_hours > 0 else 0.0

    @property
    def usd_per_month(self) -> float:
        return self.usd_per_hour * HOURS_PER_MONTH

    @property
    def gpus_mean(self) -> float:
        """GPUs paid for on average over the window."""
        return self.gpu_hours / self.window_hours if self.window_hours > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "gpu_count": self.gpu_count,
            "gpus_reporting": self.gpus_reporting,
            "gpus_mean": self.gpus_mean,
            "sample_count": self.sample_count,
            "util_mean_pct": self.util_mean_pct,
            "gpu_hours": self.gpu_hours,
            "unpriced_gpu_hours": self.unpriced_gpu_hours,
            "cost_usd": self.cost_usd,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_month": self.usd_per_month,
            "window_hours": self.window_hours,
            "sources": list(self.sources),
        }


def usage_measured(
    *,
    telemetry: dict[int, GpuTelemetry],
    gpu_ids: list[int],
    price_usd_per_gpu_hour: dict[int, float | None],
    start: datetime,
    end: datetime,
) -> MeasuredUsage:
    """Sum `gpu_ids`' telemetry: sample-weighted utilization, GPU-hours, cost at their prices."""
    rows = [telemetry[gpu_id] for gpu_id in gpu_ids if gpu_id in telemetry]
    samples = sum(row.sample_count for row in rows)
    util_sum = sum(row.util_sum_pct for row in rows)
    cost = 0.0
    unpriced = 0.0
    for row in rows:
        price = price_usd_per_gpu_hour.get(row.gpu_id)
        if price is None:
            unpriced += row.hours_observed
        else:
            cost += price * row.hours_observed
    sources = sorted({source for row in rows for source in row.sources})
    return MeasuredUsage(
        gpu_count=len(gpu_ids),
        gpus_reporting=sum(1 for row in rows if row.sample_count),
        sample_count=samples,
        util_mean_pct=util_sum / samples if samples else None,
        gpu_hours=float(sum(row.hours_observed for row in rows)),
        cost_usd=cost,
        window_hours=(end - start) / timedelta(hours=1),
        unpriced_gpu_hours=unpriced,
        sources=tuple(sources),
    )
