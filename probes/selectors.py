"""Reads of the probes app for the dashboard and assessments (typed, keyword-only).

Time windows are [start, end). Series pick the rollup resolution that keeps a chart to a
few thousand points unless one is asked for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from probes.agent.vllm_metrics import Histogram, VllmMetricsError
from probes.models import (
    EngineRollup,
    EngineSample,
    GpuMove,
    GpuRollup,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
    RequestRollup,
    RollupResolution,
)

RAW_UP_TO = timedelta(hours=2)
MINUTES_UP_TO = timedelta(days=3)


def resolution_for(*, start: datetime, end: datetime) -> str | None:
    """None (raw samples) up to 2 h, minute rollups up to 3 days, else hour rollups."""
    span = end - start
    if span <= RAW_UP_TO:
        return None
    return RollupResolution.MINUTE if span <= MINUTES_UP_TO else RollupResolution.HOUR


def gpu_samples_in_window(
    *, gpu_ids: list[int], start: datetime, end: datetime
) -> QuerySet[GpuSample]:
    return GpuSample.objects.filter(gpu_id__in=gpu_ids, ts__gte=start, ts__lt=end).order_by(
        "gpu_id", "ts"
    )


def gpu_rollups_in_window(
    *, gpu_ids: list[int] | None, resolution: str, start: datetime, end: datetime
) -> QuerySet[GpuRollup]:
    rollups = GpuRollup.objects.filter(
        resolution=resolution, bucket_start__gte=start, bucket_start__lt=end
    )
    if gpu_ids is not None:
        rollups = rollups.filter(gpu_id__in=gpu_ids)
    return rollups.order_by("gpu_id", "bucket_start")


def engine_samples_in_window(
    *, deployment: ModelDeployment, start: datetime, end: datetime
) -> QuerySet[EngineSample]:
    """Raw vLLM scrapes of all the deployment's servers, by server then time."""
    return EngineSample.objects.filter(deployment=deployment, ts__gte=start, ts__lt=end).order_by(
        "instance", "ts"
    )


def engine_rollups_in_window(
    *, deployment: ModelDeployment, resolution: str, start: datetime, end: datetime
) -> QuerySet[EngineRollup]:
    return EngineRollup.objects.filter(
        deployment=deployment, resolution=resolution, bucket_start__gte=start, bucket_start__lt=end
    ).order_by("bucket_start")


def requests_in_window(
    *, deployment: ModelDeployment, start: datetime, end: datetime
) -> QuerySet[RequestRecord]:
    """Per-request records (proxy, imports, benchmarks, derived) in arrival order."""
    return RequestRecord.objects.filter(
        deployment=deployment, arrival_ts__gte=start, arrival_ts__lt=end
    ).order_by("arrival_ts")


def request_rollups_in_window(
    *, deployment: ModelDeployment, resolution: str, start: datetime, end: datetime
) -> QuerySet[RequestRollup]:
    """The load shape: requests and tokens per minute or hour bucket."""
    return RequestRollup.objects.filter(
        deployment=deployment, resolution=resolution, bucket_start__gte=start, bucket_start__lt=end
    ).order_by("bucket_start")


@dataclass(frozen=True)
class EngineWindow:
    """What vLLM's own metrics say about a window when no per-request records exist.

    Counts are counter increases summed over the deployment's servers; histograms are the
    observations made inside the window (prompt and output token lengths, TTFT, ITL, e2e,
    queue time), from which a workload's length distributions and latencies can be derived.
    """

    requests: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    preemptions: float = 0.0
    duration_s: float = 0.0
    histograms: dict[str, Histogram] = field(default_factory=dict)

    @property
    def request_rate_rps(self) -> float | None:
        return self.requests / self.duration_s if self.duration_s > 0 else None


def engine_window(*, deployment: ModelDeployment, start: datetime, end: datetime) -> EngineWindow:
    """Derive the window's request counts and distributions from engine samples."""
    totals = {"requests": 0.0, "prompt_tokens": 0.0, "generation_tokens": 0.0, "preemptions": 0.0}
    fields = {
        "requests": "requests_finished_total",
        "prompt_tokens": "prompt_tokens_total",
        "generation_tokens": "generation_tokens_total",
        "preemptions": "preemptions_total",
    }
    histograms: dict[str, Histogram] = {}
    duration = 0.0
    by_instance: dict[str, list[EngineSample]] = {}
    for sample in engine_samples_in_window(deployment=deployment, start=start, end=end):
        by_instance.setdefault(sample.instance, []).append(sample)
    for samples in by_instance.values():
        duration = max(duration, (samples[-1].ts - samples[0].ts).total_seconds())
        for earlier, later in itertools.pairwise(samples):
            for key, name in fields.items():
                a, b = getattr(earlier, name), getattr(later, name)
                if a is not None and b is not None:
                    totals[key] += b - a if b >= a else b
        with_hist = [s.histograms for s in samples if isinstance(s.histograms, dict)]
        if len(with_hist) < 2:
            continue
        first, last = with_hist[0], with_hist[-1]
        for name, raw in last.items():
            try:
                window = Histogram.from_json(raw)
                if name in first:
                    window = window.minus(Histogram.from_json(first[name]))
                histograms[name] = histograms[name].plus(window) if name in histograms else window
            except VllmMetricsError:
                continue
    return EngineWindow(duration_s=duration, histograms=histograms, **totals)


def ingest_batches_recent(*, node: Node, limit: int = 50) -> QuerySet[IngestBatch]:
    return IngestBatch.objects.filter(node=node).order_by("-received_at")[:limit]


def gpu_moves_of(*, node: Node, limit: int = 20) -> QuerySet[GpuMove]:
    """GPUs that moved to or from `node`, and claims it made or suffered that were refused."""
    return GpuMove.objects.filter(Q(to_node=node) | Q(from_node=node)).select_related(
        "gpu", "from_node", "to_node"
    )[:limit]
