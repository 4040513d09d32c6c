"""Request-trace statistics of one deployment: arrival rate, length distributions, burstiness.

The arrival rate comes from request rollups (cheap for any window); distributions and
burstiness need per-request rows, so they use the window's most recent MAX_RECORDS
requests (all of them when the window holds fewer) and say so.

Prefix reuse: the share of prompt tokens in blocks seen earlier in the window, from the block
hashes of the newest MAX_RECORDS requests that carry them (Mooncake imports, the recording
proxy); None when none does.

Burstiness is `advisor.burstiness`'s (the gamma shape the assessment gives the engine); the
inter-arrival CV (std / mean of the raw gaps) is shown beside it under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db.models import Sum

from advisor.burstiness import burstiness_gamma_shape, inter_arrival_cv, requests_per_minute
from dashboard.selectors.sql import Epoch
from dashboard.windows import Window
from probes.models import ModelDeployment, RequestRecord, RollupResolution
from probes.models.traces import prefix_reuse_text
from probes.selectors import request_rollups_in_window, requests_in_window
from probes.traces import trace_prefix_reuse

MAX_RECORDS = 100_000
MINUTES_UP_TO = timedelta(days=3)
BUCKET_S: dict[str, int] = {RollupResolution.MINUTE: 60, RollupResolution.HOUR: 3600}


@dataclass(frozen=True)
class TraceStats:
    deployment: ModelDeployment
    window: Window
    bucket_s: int
    rate_epoch_s: np.ndarray  # bucket starts
    rate_rps: np.ndarray
    request_count: int
    error_count: int
    # Per-request arrays of the records used for distributions (newest MAX_RECORDS).
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    latest_arrival: datetime | None
    prefix_reuse_share: float | None = None
    prefix_hashed_requests: int = 0

    @property
    def prefix_reuse_text(self) -> str:
        return prefix_reuse_text(self.prefix_reuse_share)

    @property
    def rate_times(self) -> list[str]:
        return [datetime.fromtimestamp(t, UTC).isoformat() for t in self.rate_epoch_s]

    @property
    def sampled(self) -> bool:
        return self.arrival_s.size < self.request_count

    @property
    def records_span(self) -> tuple[datetime, datetime] | None:
        if self.arrival_s.size == 0:
            return None
        return (
            datetime.fromtimestamp(float(self.arrival_s[0]), UTC),
            datetime.fromtimestamp(float(self.arrival_s[-1]), UTC),
        )

    @property
    def inter_arrival_s(self) -> np.ndarray:
        return np.diff(self.arrival_s)

    @property
    def inter_arrival_cv(self) -> float | None:
        return inter_arrival_cv(self.arrival_s)

    @property
    def burstiness(self) -> float | None:
        """As the assessment measures it, over these records' own per-minute counts."""
        if self.arrival_s.size == 0:
            return None
        start_s = float(self.arrival_s[0]) // 60 * 60
        per_minute = requests_per_minute(self.arrival_s, start_s)
        return burstiness_gamma_shape(self.arrival_s, per_minute, start_s)

    @property
    def mean_rate_rps(self) -> float | None:
        if self.arrival_s.size < 2:
            return None
        span = float(self.arrival_s[-1] - self.arrival_s[0])
        return (self.arrival_s.size - 1) / span if span > 0 else None

    @property
    def peak_to_mean(self) -> float | None:
        """Busiest bucket's rate over the mean rate of the buckets with traffic."""
        busy = self.rate_rps[self.rate_rps > 0]
        return float(busy.max() / busy.mean()) if busy.size else None

    @staticmethod
    def percentiles(values: np.ndarray) -> dict[str, float | None]:
        clean = values[~np.isnan(values)]
        if clean.size == 0:
            return {"p50": None, "p90": None, "p99": None, "mean": None}
        p50, p90, p99 = np.percentile(clean, [50, 90, 99])
        return {
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "mean": float(clean.mean()),
        }


def trace_stats(*, deployment: ModelDeployment, window: Window) -> TraceStats:
    resolution = RollupResolution.MINUTE if window.span <= MINUTES_UP_TO else RollupResolution.HOUR
    bucket_s = BUCKET_S[resolution]
    rollups = request_rollups_in_window(
        deployment=deployment, resolution=resolution, start=window.start, end=window.end
    )
    rate = np.array(
        list(rollups.annotate(epoch=Epoch("bucket_start")).values_list("epoch", "request_count")),
        dtype=np.float64,
    ).reshape(-1, 2)
    totals = rollups.aggregate(requests=Sum("request_count"), errors=Sum("error_count"))

    newest = (
        requests_in_window(deployment=deployment, start=window.start, end=window.end)
        .order_by("-arrival_ts")
        .annotate(epoch=Epoch("arrival_ts"))
        .values_list("epoch", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s")[:MAX_RECORDS]
    )
    rows = np.array(
        [[np.nan if v is None else v for v in row] for row in newest], dtype=np.float64
    ).reshape(-1, 5)[::-1]
    request_count = int(totals["requests"] or 0)
    error_count = int(totals["errors"] or 0)
    if rate.size == 0 and rows.size:
        # Rollups not computed yet (an import a moment ago): bin the records themselves.
        rate = _binned(rows[:, 0], bucket_s)
        request_count = rows.shape[0]
    rate = _zero_filled(rate, window, bucket_s)
    hashed_rows = (
        requests_in_window(deployment=deployment, start=window.start, end=window.end)
        .filter(prefix_block_hashes__isnull=False, prefix_block_tokens__isnull=False)
        .order_by("-arrival_ts")
        .annotate(epoch=Epoch("arrival_ts"))
        .values_list("epoch", "prompt_tokens", "prefix_block_tokens", "prefix_block_hashes")
    )
    hashed = [
        (float(epoch), int(prompt), int(block_tokens), tuple(hashes))
        for epoch, prompt, block_tokens, hashes in hashed_rows[:MAX_RECORDS]
        if block_tokens is not None and isinstance(hashes, list)
    ]
    latest = (
        RequestRecord.objects.filter(deployment=deployment)
        .order_by("-arrival_ts")
        .values_list("arrival_ts", flat=True)
        .first()
    )
    return TraceStats(
        deployment=deployment,
        window=window,
        bucket_s=bucket_s,
        rate_epoch_s=rate[:, 0],
        rate_rps=rate[:, 1] / bucket_s,
        request_count=max(request_count, rows.shape[0]),
        error_count=error_count,
        arrival_s=rows[:, 0],
        prompt_tokens=rows[:, 1],
        output_tokens=rows[:, 2],
        ttft_s=rows[:, 3],
        e2e_s=rows[:, 4],
        latest_arrival=latest,
        prefix_reuse_share=trace_prefix_reuse(hashed),
        prefix_hashed_requests=len(hashed),
    )


def _binned(arrival_s: np.ndarray, bucket_s: int) -> np.ndarray:
    starts = np.floor(arrival_s / bucket_s) * bucket_s
    buckets, counts = np.unique(starts, return_counts=True)
    return np.stack([buckets, counts.astype(np.float64)], axis=1)


def _zero_filled(rate: np.ndarray, window: Window, bucket_s: int) -> np.ndarray:
    """Every bucket of the window, 0 where no request arrived (rollups skip empty buckets)."""
    first = np.floor(window.start.timestamp() / bucket_s) * bucket_s
    grid = np.arange(first, window.end.timestamp(), bucket_s)
    counts = np.zeros(grid.size)
    if rate.size:
        index = ((rate[:, 0] - first) // bucket_s).astype(np.int64)
        inside = (index >= 0) & (index < grid.size)
        np.add.at(counts, index[inside], rate[inside, 1])
    return np.stack([grid, counts], axis=1)
