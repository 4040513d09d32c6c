"""A deployment's workload over a window, derived from its own data, or what is missing.

`workload_derive` returns a `DerivedWorkload` (what the engine's scenario takes) or a
`DataGap` (not enough data is an answer: what is missing and what would be enough).

- Arrival rate per minute of the window: request counts per minute from vLLM's request
  counters (engine rollups) or from request records (agent proxy, imported traces),
  whichever covers more minutes (the other fills its gaps). Minutes neither covers follow the
  load shape of the deployment's GPUs (minute rollups of their utilization), scaled so that
  the covered minutes match; where that is missing too, the covered minutes' mean rate.
- Burstiness: as `advisor.burstiness` defines it (the gamma shape of rate-normalised
  inter-arrival gaps); 1.0 (Poisson) when fewer than `MIN_REQUESTS` records exist.
- Request sample (what the engine replays and resamples): the latest `SAMPLE_MAX` request
  records in a row (real gaps and (prompt, output) pairs), or, without enough records,
  lengths drawn from vLLM's prompt and generation token histograms (independently:
  histograms do not pair them) with Poisson arrivals at the window's mean rate.
- Prefix reuse: the sample keeps the records' prompt block hashes (`Workload.prefix`) when
  any record carries them (Mooncake imports, the recording proxy), so the engine simulates
  vLLM's prefix cache; otherwise reuse is unknown (`prefix_reuse_known` False) and said so.
- Daily and weekly shape: mean rate per hour of day (UTC) and per hour of week, relative to
  the window's mean rate.

Enough data means: >= `MIN_REQUESTS` request lengths (records or histograms), request counts
for some minutes, >= `MIN_LOAD_HOURS` of load telemetry or an imported trace, and a measured
rate (counted, or estimated from GPU utilization) for at least the data floor's share of the
window's minutes (`advisor.evidence.MIN_MEASURED_SHARE`; below it the gap says "not enough
data" and `below_floor`: the deployment is not priced and stays at today's cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import Avg, Count, Max, Min, Sum
from django.db.models.functions import TruncMinute

from advisor.burstiness import burstiness_gamma_shape
from advisor.engine.prefix_cache import prefix_blocks_from_rows, reused_prompt_share
from advisor.engine.workload import PrefixBlocks, gamma_arrivals_s
from advisor.evidence import Coverage, below_floor_text
from probes.agent.vllm_metrics import Histogram, VllmMetricsError
from probes.models import (
    EngineRollup,
    GpuRollup,
    ModelDeployment,
    RequestRecord,
    RequestSource,
    RollupResolution,
    TraceImport,
)
from probes.selectors import engine_window

MIN_REQUESTS = 100
MIN_LOAD_HOURS = 24.0
SAMPLE_MAX = 20_000  # requests in the scenario's sample (~400 kB of JSON)
# Records read for lengths and burstiness: the most recent ones (3 columns, ~10 MB at most).
MAX_RECORDS_READ = 200_000
PREFIX_UNKNOWN = "prefix reuse unknown: the request records carry no prompt block hashes"
PROMPT_HISTOGRAM = "request_prompt_tokens"
OUTPUT_HISTOGRAM = "request_generation_tokens"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class DerivedWorkload:
    """What one deployment served over the window, as the engine's scenario describes it."""

    deployment_id: int
    served_name: str
    start: datetime
    end: datetime
    rate_rps: FloatArray  # one value per minute of the window
    rate_source: str
    covered_minutes: int  # counted: request records or vLLM counters
    burstiness: float
    burstiness_source: str
    sample_arrival_s: FloatArray  # a request sample: arrivals from 0, with its lengths
    prompt_tokens: IntArray
    output_tokens: IntArray
    lengths_source: str
    daily_shape: tuple[float, ...]
    weekly_shape: tuple[float, ...] | None
    shape_source: str
    request_records: int
    notes: tuple[str, ...] = field(default=())
    spec_decode: dict[str, int] | None = None  # vLLM spec-decode counter increases
    estimated_minutes: int = 0  # rate scaled from the GPUs' measured utilization
    prefix: PrefixBlocks | None = None  # the sample's prompt block hashes; None: unknown
    prefix_source: str = PREFIX_UNKNOWN

    @property
    def prefix_reuse_known(self) -> bool:
        return self.prefix is not None

    @property
    def prefix_reuse_share(self) -> float | None:
        """Share of the sample's prompt tokens in blocks seen earlier in it (None: unknown)."""
        if self.prefix is None:
            return None
        return reused_prompt_share(self.prefix, self.prompt_tokens)

    @property
    def coverage(self) -> Coverage:
        return Coverage(int(self.rate_rps.size), self.covered_minutes, self.estimated_minutes)

    @property
    def mean_rate_rps(self) -> float:
        return float(self.rate_rps.mean()) if self.rate_rps.size else 0.0

    def summary(self) -> dict[str, Any]:
        """Provenance and headline figures (not the arrays) for the assessment's `inputs`."""
        return {
            "rate_source": self.rate_source,
            "covered_minutes": self.covered_minutes,
            **self.coverage.to_json(),
            "mean_rate_rps": self.mean_rate_rps,
            "peak_rate_rps": float(self.rate_rps.max()) if self.rate_rps.size else 0.0,
            "burstiness": self.burstiness,
            "burstiness_source": self.burstiness_source,
            "lengths_source": self.lengths_source,
            "sample_requests": int(self.prompt_tokens.size),
            "prompt_tokens_mean": float(self.prompt_tokens.mean()),
            "output_tokens_mean": float(self.output_tokens.mean()),
            "prompt_tokens_p50": float(np.percentile(self.prompt_tokens, 50)),
            "prompt_tokens_p99": float(np.percentile(self.prompt_tokens, 99)),
            "output_tokens_p50": float(np.percentile(self.output_tokens, 50)),
            "output_tokens_p99": float(np.percentile(self.output_tokens, 99)),
            "daily_shape": list(self.daily_shape),
            "weekly_shape": None if self.weekly_shape is None else list(self.weekly_shape),
            "shape_source": self.shape_source,
            "request_records": self.request_records,
            "prefix_reuse_share": self.prefix_reuse_share,
            "prefix_source": self.prefix_source,
            "spec_decode": self.spec_decode,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DataGap:
    """Why a deployment could not be assessed: the message, and each missing input."""

    deployment_id: int
    served_name: str
    message: str
    missing: tuple[str, ...]
    have: dict[str, Any]
    below_floor: bool = False  # enough to simulate, too little measured to price

    def to_json(self) -> dict[str, Any]:
        out = {
            "deployment_id": self.deployment_id,
            "deployment": self.served_name,
            "message": self.message,
            "missing": list(self.missing),
            "have": self.have,
        }
        if self.below_floor:
            out["below_floor"] = True
        return out


def _trace_outside(deployment: ModelDeployment, start: datetime, end: datetime) -> str:
    """ "; its imported trace ... lies outside this window ..." when it has one, else ""."""
    latest = (
        TraceImport.objects.filter(deployment=deployment, first_arrival_ts__isnull=False)
        .order_by("-created_at")
        .first()
    )
    if latest is None or latest.first_arrival_ts is None or latest.last_arrival_ts is None:
        return ""
    fmt = "%Y-%m-%d %H:%M"
    return (
        f"; its imported trace {latest.file_name} ({latest.first_arrival_ts:{fmt}} to "
        f"{latest.last_arrival_ts:{fmt}} UTC) lies outside this window ({start:{fmt}} to "
        f"{end:{fmt}} UTC): import it again shifted to end now"
    )


def _hours_text(hours: float) -> str:
    if hours == 0:
        return "no"
    return f"{hours:.0f} h" if hours >= 1 else f"{hours * 60:.0f} min"


@dataclass
class _Counts:
    per_minute: FloatArray
    covered: npt.NDArray[np.bool_]
    source: str


def _record_counts(deployment: ModelDeployment, start: datetime, minutes: int) -> _Counts:
    end = start + timedelta(minutes=minutes)
    counts = np.zeros(minutes)
    covered = np.zeros(minutes, dtype=bool)
    rows = (
        RequestRecord.objects.filter(
            deployment=deployment, arrival_ts__gte=start, arrival_ts__lt=end
        )
        .annotate(minute=TruncMinute("arrival_ts"))
        .values("minute")
        .annotate(n=Count("id"))
    )
    index = [((row["minute"] - start) // timedelta(minutes=1), row["n"]) for row in rows]
    if index:
        at = np.array([i for i, _ in index], dtype=np.int64)
        counts[at] = [n for _, n in index]
        covered[at.min() : at.max() + 1] = True
    return _Counts(counts, covered, "request records")


def _engine_counts(deployment: ModelDeployment, start: datetime, minutes: int) -> _Counts:
    end = start + timedelta(minutes=minutes)
    counts = np.zeros(minutes)
    covered = np.zeros(minutes, dtype=bool)
    window = EngineRollup.objects.filter(
        deployment=deployment, bucket_start__gte=start, bucket_start__lt=end, sample_count__gt=0
    )
    for bucket, requests in window.filter(resolution=RollupResolution.HOUR).values_list(
        "bucket_start", "requests"
    ):
        first = (bucket - start) // timedelta(minutes=1)
        counts[first : first + 60] = requests / 60.0
        covered[first : first + 60] = True
    minute_rows = window.filter(resolution=RollupResolution.MINUTE).values_list(
        "bucket_start", "requests"
    )
    minute_index = [((b - start) // timedelta(minutes=1), r) for b, r in minute_rows]
    if minute_index:
        # Minute buckets replace the spread-out hour figures of the hours they cover.
        at = np.array([i for i, _ in minute_index], dtype=np.int64)
        hours = np.unique(at // 60)
        for hour in hours:
            counts[hour * 60 : hour * 60 + 60] = 0.0
        counts[at] = [r for _, r in minute_index]
        covered[at] = True
    return _Counts(counts, covered, "vLLM request counters")


def _gpu_load(gpu_ids: list[int], start: datetime, minutes: int) -> tuple[FloatArray, str | None]:
    """Mean utilization of the GPUs per minute (NaN where none reported)."""
    end = start + timedelta(minutes=minutes)
    util = np.full(minutes, np.nan)
    if not gpu_ids:
        return util, None
    for resolution, width in ((RollupResolution.HOUR, 60), (RollupResolution.MINUTE, 1)):
        rows = (
            GpuRollup.objects.filter(
                gpu_id__in=gpu_ids, resolution=resolution, bucket_start__gte=start,
                bucket_start__lt=end,
            )
            .values("bucket_start")
            .annotate(u=Avg("util_mean_pct"))
            .values_list("bucket_start", "u")
        )  # fmt: skip
        for bucket, mean in rows:
            first = (bucket - start) // timedelta(minutes=1)
            util[first : first + width] = mean
    source = None if np.all(np.isnan(util)) else "utilization of its GPUs (GPU rollups)"
    return util, source


def _histograms(
    deployment: ModelDeployment, start: datetime, end: datetime
) -> dict[str, Histogram]:
    """Prompt and generation token histograms of the window: hour rollups, else raw scrapes."""
    totals: dict[str, Histogram] = {}
    rollups = EngineRollup.objects.filter(
        deployment=deployment, resolution=RollupResolution.HOUR, bucket_start__gte=start,
        bucket_start__lt=end,
    ).values_list("histograms", flat=True)  # fmt: skip
    for raw in rollups:
        for name in (PROMPT_HISTOGRAM, OUTPUT_HISTOGRAM):
            if isinstance(raw, dict) and name in raw:
                try:
                    hist = Histogram.from_json(raw[name])
                    totals[name] = totals[name].plus(hist) if name in totals else hist
                except VllmMetricsError:
                    continue
    if not totals:
        window = engine_window(deployment=deployment, start=start, end=end)
        totals = {
            name: hist
            for name, hist in window.histograms.items()
            if name in (PROMPT_HISTOGRAM, OUTPUT_HISTOGRAM)
        }
    return totals


def sample_histogram(hist: Histogram, rng: np.random.Generator, size: int) -> IntArray:
    """Token counts drawn from a cumulative histogram (uniform inside a bucket, >= 1)."""
    bounds = np.array([b for b, _ in hist.buckets], dtype=float)
    cumulative = np.array([c for _, c in hist.buckets], dtype=float)
    finite = np.isfinite(bounds)
    top = bounds[finite].max() if finite.any() else 1.0
    bounds = np.where(finite, bounds, top)
    per_bucket = np.diff(np.concatenate(([0.0], cumulative)))
    total = per_bucket.sum()
    if total <= 0:
        return np.ones(size, dtype=np.int64)
    which = rng.choice(per_bucket.size, size=size, p=per_bucket / total)
    lower = np.concatenate(([0.0], bounds[:-1]))[which]
    upper = bounds[which]
    values = lower + (upper - lower) * rng.random(size)
    return np.maximum(np.rint(values), 1).astype(np.int64)


def _shapes(
    rate: FloatArray, start: datetime
) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
    mean = rate.mean() if rate.size else 0.0
    if mean <= 0:
        return tuple([1.0] * 24), None
    minute_of_week = (
        (start.weekday() * 1440 + start.hour * 60 + start.minute) + np.arange(rate.size)
    ) % (7 * 1440)
    hour_of_day = (minute_of_week % 1440) // 60
    daily = tuple(
        float(rate[hour_of_day == h].mean() / mean) if np.any(hour_of_day == h) else 1.0
        for h in range(24)
    )
    weekly = None
    if rate.size >= 7 * 1440:
        hour_of_week = minute_of_week // 60
        weekly = tuple(float(rate[hour_of_week == h].mean() / mean) for h in range(168))
    return daily, weekly


def workload_derive(
    *,
    deployment: ModelDeployment,
    gpu_ids: list[int],
    gpu_hours_observed: float,
    start: datetime,
    end: datetime,
    seed: int,
) -> DerivedWorkload | DataGap:
    """Derive the deployment's workload over [start, end) (whole minutes) or say what is missing.

    `gpu_hours_observed`: the most hours any of its GPUs reported in the window (measured).
    """
    minutes = int((end - start) // timedelta(minutes=1))
    name = deployment.served_name
    rng = np.random.default_rng(seed)
    records = RequestRecord.objects.filter(
        deployment=deployment, arrival_ts__gte=start, arrival_ts__lt=end
    )
    stats = records.aggregate(n=Count("id"), first=Min("arrival_ts"), last=Max("arrival_ts"))
    record_count = int(stats["n"])
    imported = records.filter(source=RequestSource.IMPORT).exists()
    record_hours = (
        (stats["last"] - stats["first"]) / timedelta(hours=1) if record_count > 1 else 0.0
    )
    by_records = _record_counts(deployment, start, minutes)
    by_engine = _engine_counts(deployment, start, minutes)
    engine_hours = float(by_engine.covered.sum()) / 60.0
    load_hours = max(record_hours, engine_hours, gpu_hours_observed)
    histograms = {} if record_count >= MIN_REQUESTS else _histograms(deployment, start, end)
    hist_count = min((h.count for h in histograms.values()), default=0.0)
    if len(histograms) < 2:
        hist_count = 0.0

    have = {
        "request_records": record_count,
        "imported_trace": imported,
        "telemetry_hours": round(load_hours, 2),
        "gpu_telemetry_hours": round(gpu_hours_observed, 2),
        "vllm_counter_hours": round(engine_hours, 2),
        "vllm_length_histogram_requests": hist_count,
    }
    missing: list[str] = []
    records_text = f"{record_count} request records" if record_count else "no request records"
    if load_hours < MIN_LOAD_HOURS and not imported:
        missing.append(
            f"load history: {_hours_text(load_hours)} of telemetry and {records_text}; "
            f"needs >= {MIN_LOAD_HOURS:.0f} h or an imported trace"
        )
    if not by_records.covered.any() and not by_engine.covered.any():
        missing.append(
            "request counts: no request records and no vLLM request counters in the window; "
            "needs the agent's vLLM metrics or recording proxy, or an imported trace"
        )
    if record_count < MIN_REQUESTS and hist_count < MIN_REQUESTS:
        missing.append(
            f"request lengths: {record_count} request records and no vLLM token-length "
            f"histograms; needs >= {MIN_REQUESTS} requests (recording proxy or imported trace)"
        )
    if missing:
        if load_hours < MIN_LOAD_HOURS and not imported:
            message = (
                f"deployment {name} has {_hours_text(load_hours)} of telemetry and "
                f"{records_text}; needs >= {MIN_LOAD_HOURS:.0f} h or an imported trace"
            )
        else:
            message = f"deployment {name}: " + "; ".join(missing)
        if not imported:
            message += _trace_outside(deployment, start, end)
        return DataGap(deployment.id, name, message, tuple(missing), have)

    notes: list[str] = []
    primary, secondary = (
        (by_engine, by_records)
        if by_engine.covered.sum() >= by_records.covered.sum()
        else (by_records, by_engine)
    )
    counts = np.where(primary.covered, primary.per_minute, secondary.per_minute)
    covered = primary.covered | secondary.covered
    rate_source = primary.source
    if secondary.covered.any() and (secondary.covered & ~primary.covered).any():
        rate_source += f", gaps filled from {secondary.source}"
    util, util_source = _gpu_load(gpu_ids, start, minutes)
    shape_source = rate_source
    uncovered = ~covered
    estimated = 0
    if uncovered.any():
        usable = covered & ~np.isnan(util)
        fill = uncovered & ~np.isnan(util)
        util_sum = float(util[usable].sum()) if usable.any() else 0.0
        if fill.any() and util_sum > 0:
            scale = float(counts[usable].sum()) / util_sum
            counts[fill] = util[fill] * scale
            estimated = int(fill.sum())
            rate_source += f"; {int(fill.sum())} min from the {util_source} scaled to match"
            shape_source = f"{primary.source} and the {util_source}"
            notes.append(
                "where no request counts exist, the rate follows the GPUs' utilization "
                f"(requests per minute = {scale:.3f} x utilization %, fitted on "
                f"{int(usable.sum())} minutes with both)"
            )
        rest = uncovered & ~fill if util_sum > 0 else uncovered
        if rest.any():
            counts[rest] = counts[covered].mean()
            notes.append(
                f"{int(rest.sum())} minutes without counts or GPU telemetry assume the mean "
                "rate of the covered minutes"
            )
    rate = counts / 60.0
    coverage = Coverage(minutes, int(covered.sum()), estimated)
    if coverage.below_floor:
        have["counted_minutes"] = coverage.counted_minutes
        have["estimated_minutes"] = coverage.estimated_minutes
        have["window_minutes"] = coverage.window_minutes
        return DataGap(
            deployment.id,
            name,
            f"deployment {name}: {below_floor_text(coverage)}",
            (
                f"measured load: {coverage.measured_minutes:,} of {minutes:,} minutes; needs "
                "a longer trace, vLLM metrics or GPU telemetry over more of the window, or a "
                "shorter window",
            ),
            have,
            below_floor=True,
        )

    recent = records.order_by("-arrival_ts").values_list(
        "arrival_ts", "prompt_tokens", "output_tokens", "prefix_block_hashes", "prefix_block_tokens"
    )[:MAX_RECORDS_READ]
    prefix: PrefixBlocks | None = None
    prefix_source = PREFIX_UNKNOWN
    if record_count >= MIN_REQUESTS:
        rows = list(recent)[::-1]
        arrival = np.array([r[0].timestamp() for r in rows])
        prompt = np.array([r[1] for r in rows], dtype=np.int64)
        output = np.array([r[2] for r in rows], dtype=np.int64)
        if record_count > MAX_RECORDS_READ:
            notes.append(f"lengths and burstiness from the latest {MAX_RECORDS_READ} requests")
        # The sample is the latest requests in a row, so their gaps keep the real burstiness.
        tail = slice(max(prompt.size - SAMPLE_MAX, 0), prompt.size)
        sample_arrival = arrival[tail] - arrival[tail][0]
        prompt_tokens = np.maximum(prompt[tail], 1)
        output_tokens = np.maximum(output[tail], 1)
        lengths_source = (
            f"request records (the latest {prompt_tokens.size} of {record_count} in the window)"
        )
        burst = burstiness_gamma_shape(arrival, by_records.per_minute, start.timestamp())
        prefix, prefix_source = _sample_prefix(rows[tail])
    else:
        size = int(min(SAMPLE_MAX, hist_count))
        prompt_tokens = sample_histogram(histograms[PROMPT_HISTOGRAM], rng, size)
        output_tokens = sample_histogram(histograms[OUTPUT_HISTOGRAM], rng, size)
        lengths_source = (
            f"vLLM token histograms ({hist_count:.0f} requests; prompt and output drawn "
            "independently)"
        )
        mean_rate = float(rate[rate > 0].mean()) if np.any(rate > 0) else 1.0
        sample_arrival = gamma_arrivals_s(rng, num_requests=size, rate_rps=mean_rate)
        notes.append(
            f"no request records: the request sample has Poisson arrivals at {mean_rate:.3g} "
            "req/s (the window's mean busy rate) and lengths from vLLM's histograms"
        )
        burst = None
    if burst is None:
        burstiness, burstiness_source = 1.0, "assumed Poisson (too few request records)"
    else:
        burstiness = burst
        burstiness_source = "gamma shape of rate-normalised inter-arrival gaps (request records)"
    daily, weekly = _shapes(rate, start)
    return DerivedWorkload(
        deployment_id=deployment.id,
        served_name=name,
        start=start,
        end=end,
        rate_rps=rate,
        rate_source=rate_source,
        covered_minutes=int(covered.sum()),
        burstiness=burstiness,
        burstiness_source=burstiness_source,
        sample_arrival_s=sample_arrival,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        lengths_source=lengths_source,
        daily_shape=daily,
        weekly_shape=weekly,
        shape_source=shape_source,
        request_records=record_count,
        notes=tuple(notes),
        spec_decode=spec_decode_totals(deployment=deployment, start=start, end=end),
        estimated_minutes=estimated,
        prefix=prefix,
        prefix_source=prefix_source,
    )


def _sample_prefix(rows: list[Any]) -> tuple[PrefixBlocks | None, str]:
    """Block hashes of the sample's records (rows ending in hashes and block size), and why."""
    size = len(rows)
    # a record with more blocks than its prompt starts holds no usable hashes
    hashes = [
        row[3]
        if isinstance(row[3], list) and row[4] and len(row[3]) <= -(-max(row[1], 1) // row[4])
        else None
        for row in rows
    ]
    blocks, kept = prefix_blocks_from_rows(hashes, [row[4] for row in rows])
    if blocks is None:
        return None, PREFIX_UNKNOWN
    source = (
        f"prompt block hashes of {kept} of the {size} sampled requests "
        f"({blocks.block_tokens}-token blocks)"
    )
    if kept < size:
        source += "; the others count as not reused"
    return blocks, source


def spec_decode_totals(
    *, deployment: ModelDeployment, start: datetime, end: datetime
) -> dict[str, int] | None:
    """vLLM's speculative-decoding counter increases over the window (hour rollups), if any."""
    totals = EngineRollup.objects.filter(
        deployment=deployment, resolution=RollupResolution.HOUR, bucket_start__gte=start,
        bucket_start__lt=end,
    ).aggregate(
        drafts=Sum("spec_decode_drafts"), draft_tokens=Sum("spec_decode_draft_tokens"),
        accepted=Sum("spec_decode_accepted_tokens"),
    )  # fmt: skip
    if not totals["drafts"] or not totals["draft_tokens"]:
        return None
    return {name: int(value or 0) for name, value in totals.items()}
