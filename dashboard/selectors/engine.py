"""vLLM engine series of one deployment (all its servers), from engine rollups.

1-minute rollups up to 3 days, 1-hour beyond. Window latency percentiles come from the
buckets' histograms added together (observations made inside the window), not from an
average of per-bucket percentiles, which would understate the tail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from dashboard.selectors.sql import Epoch
from dashboard.windows import Window
from probes.agent.vllm_metrics import Histogram, VllmMetricsError
from probes.models import EngineSample, ModelDeployment, Node, RollupResolution
from probes.selectors import engine_rollups_in_window

MINUTES_UP_TO = timedelta(days=3)
BUCKET_S: dict[str, int] = {RollupResolution.MINUTE: 60, RollupResolution.HOUR: 3600}
FIELDS = (
    "running_mean", "running_max", "waiting_mean", "waiting_max", "kv_cache_usage_mean",
    "kv_cache_usage_max", "requests", "prompt_tokens", "generation_tokens", "preemptions",
    "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s", "e2e_p50_s",
    "e2e_p90_s", "e2e_p99_s",
)  # fmt: skip
# Histogram name in vLLM -> the label pages use.
LATENCIES = {
    "time_to_first_token_seconds": "TTFT",
    "inter_token_latency_seconds": "ITL",
    "e2e_request_latency_seconds": "E2E",
    "request_queue_time_seconds": "queue",
}
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class EngineSeries:
    deployment: ModelDeployment
    resolution: str
    bucket_s: int
    epoch_s: np.ndarray
    values: dict[str, np.ndarray]
    # label -> {quantile: seconds}, over the whole window
    latency: dict[str, dict[float, float | None]]
    # "histograms" (exact), "bucket percentiles" (no histograms kept: the request-weighted
    # mean of each bucket's percentiles, which understates the tail), or "" (nothing)
    latency_basis: str = ""

    @property
    def times(self) -> list[str]:
        return [datetime.fromtimestamp(t, UTC).isoformat() for t in self.epoch_s]

    @property
    def empty(self) -> bool:
        return self.epoch_s.size == 0

    def rate_per_s(self, name: str) -> np.ndarray:
        return self.values[name] / self.bucket_s

    def total(self, name: str) -> float:
        return float(np.nansum(self.values[name])) if self.values[name].size else 0.0

    def mean(self, name: str) -> float | None:
        values = self.values[name]
        if values.size == 0 or np.isnan(values).all():
            return None
        return float(np.nanmean(values))

    def peak(self, name: str) -> float | None:
        values = self.values[name]
        if values.size == 0 or np.isnan(values).all():
            return None
        return float(np.nanmax(values))

    @property
    def duration_s(self) -> float:
        return float(self.epoch_s.size * self.bucket_s)


def engine_series(*, deployment: ModelDeployment, window: Window) -> EngineSeries:
    resolution = RollupResolution.MINUTE if window.span <= MINUTES_UP_TO else RollupResolution.HOUR
    rollups = engine_rollups_in_window(
        deployment=deployment, resolution=resolution, start=window.start, end=window.end
    )
    rows = list(rollups.annotate(epoch=Epoch("bucket_start")).values_list("epoch", *FIELDS))
    data = np.array(
        [[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64
    ).reshape(-1, 1 + len(FIELDS))
    values = {name: data[:, 1 + i] for i, name in enumerate(FIELDS)}
    latency = _window_latency(rollups.values_list("histograms", flat=True))
    basis = "histograms" if latency else ""
    if not latency:
        latency = _bucket_latency(values)
        basis = "bucket percentiles" if latency else ""
    return EngineSeries(
        deployment, resolution, BUCKET_S[resolution], data[:, 0], values, latency, basis
    )


def _bucket_latency(values: dict[str, np.ndarray]) -> dict[str, dict[float, float | None]]:
    """Without histograms (a Prometheus source, or rollups that kept none): each bucket's
    percentile weighted by its requests, per latency and quantile the buckets have."""
    weights = values["requests"]
    out: dict[str, dict[float, float | None]] = {}
    for prefix, label in (("ttft", "TTFT"), ("itl", "ITL"), ("e2e", "E2E")):
        row: dict[float, float | None] = {}
        for q in QUANTILES:
            column = values.get(f"{prefix}_p{round(q * 100)}_s")
            if column is None:
                row[q] = None
                continue
            use = np.isfinite(column) & np.isfinite(weights) & (weights > 0)
            row[q] = float(np.average(column[use], weights=weights[use])) if use.any() else None
        if any(v is not None for v in row.values()):
            out[label] = row
    return out


def _window_latency(histograms: Iterable[Any]) -> dict[str, dict[float, float | None]]:
    merged: dict[str, Histogram] = {}
    for raw in histograms:
        if not isinstance(raw, dict):
            continue
        for name in LATENCIES:
            if name not in raw:
                continue
            try:
                hist = Histogram.from_json(raw[name])
                merged[name] = merged[name].plus(hist) if name in merged else hist
            except VllmMetricsError:
                continue  # bounds changed (vLLM upgrade): keep the earlier ones
    return {
        LATENCIES[name]: {q: hist.quantile(q) for q in QUANTILES}
        for name, hist in merged.items()
        if hist.count > 0
    }


@dataclass(frozen=True)
class EngineNow:
    """The latest scrape of one vLLM server."""

    instance: str
    deployment: ModelDeployment
    ts: datetime
    running: float
    waiting: float
    kv_cache_usage: float | None
    requests_per_s: float | None


def engine_now(
    *, node: Node | None = None, deployment: ModelDeployment | None = None
) -> list[EngineNow]:
    """The latest scrape of each vLLM server on a node or of a deployment (last 15 min)."""
    samples = EngineSample.objects.filter(ts__gte=timezone.now() - timedelta(minutes=15))
    if node is not None:
        samples = samples.filter(node=node)
    if deployment is not None:
        samples = samples.filter(deployment=deployment)
    latest: dict[tuple[int, str], EngineSample] = {}
    for sample in samples.select_related("deployment").order_by("ts"):
        latest[(sample.deployment_id, sample.instance)] = sample
    return [
        EngineNow(
            instance=s.instance,
            deployment=s.deployment,
            ts=s.ts,
            running=s.num_requests_running,
            waiting=s.num_requests_waiting,
            kv_cache_usage=s.kv_cache_usage,
            requests_per_s=s.requests_per_s,
        )
        for s in sorted(latest.values(), key=lambda s: (s.deployment.served_name, s.instance))
    ]
