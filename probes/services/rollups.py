"""1-minute and 1-hour rollups of GPU samples, vLLM engine samples and request records.

Rollups are recomputed from the raw rows for whole hours (an hour's minute buckets and the
hour bucket itself), deleting and re-creating the buckets in one transaction, so running a
rollup again, or after late data (an agent's spool delivered after an outage), gives the
same result as running it once.

A GPU rollup counts its idle minutes (clock minutes whose samples all stayed below
`IDLE_UTIL_PCT`) at both resolutions, so idle time read from hour rollups is the idle time
the minute rollups show, not only the wholly idle hours.

Engine rollups are per deployment, all its servers (`instance`) together: gauges are per
server means (and maxima) summed over servers (running, waiting) or averaged (KV usage);
counter increases and histogram windows are taken between consecutive scrapes of the same
server (a drop means a restart: the later value is the increase) and credited to the
bucket of the later scrape.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from probes.agent.vllm_metrics import Histogram, VllmMetricsError
from probes.models import (
    IDLE_UTIL_PCT,
    EngineRollup,
    EngineSample,
    GpuRollup,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
    RequestRollup,
    RollupResolution,
    TraceImport,
)

MINUTE = RollupResolution.MINUTE
HOUR = RollupResolution.HOUR
BUCKET_S = {MINUTE: 60, HOUR: 3600}
# Engine counters (sample field -> rollup field).
ENGINE_COUNTERS = {
    "prompt_tokens_total": "prompt_tokens",
    "generation_tokens_total": "generation_tokens",
    "requests_finished_total": "requests",
    "preemptions_total": "preemptions",
    "spec_decode_drafts_total": "spec_decode_drafts",
    "spec_decode_draft_tokens_total": "spec_decode_draft_tokens",
    "spec_decode_accepted_tokens_total": "spec_decode_accepted_tokens",
}
# (rollup field, histogram, quantile)
ENGINE_QUANTILES = (
    ("ttft_p50_s", "time_to_first_token_seconds", 0.5),
    ("ttft_p90_s", "time_to_first_token_seconds", 0.9),
    ("ttft_p99_s", "time_to_first_token_seconds", 0.99),
    ("itl_p50_s", "inter_token_latency_seconds", 0.5),
    ("itl_p99_s", "inter_token_latency_seconds", 0.99),
    ("e2e_p50_s", "e2e_request_latency_seconds", 0.5),
    ("e2e_p90_s", "e2e_request_latency_seconds", 0.9),
    ("e2e_p99_s", "e2e_request_latency_seconds", 0.99),
)
# How far before a window to look for the scrape that counter increases start from.
ENGINE_LOOKBACK = timedelta(minutes=15)
# Request rollups read at most this much time at once (bounded memory for long traces).
REQUEST_WINDOW = timedelta(days=1)


def hours_covering(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end] widened to whole UTC hours."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return first, last


# -- GPU ------------------------------------------------------------------------------------


def gpu_rollups_compute(
    *, start: datetime, end: datetime, gpu_ids: Iterable[int] | None = None
) -> int:
    """Recompute GPU rollups of the hours covering [start, end]; returns buckets written."""
    h0, h1 = hours_covering(start, end)
    ids = None if gpu_ids is None else list(gpu_ids)
    samples = _only(GpuSample.objects.filter(ts__gte=h0, ts__lt=h1), "gpu_id", ids)
    rows = samples.order_by("gpu_id", "ts").values_list(
        "gpu_id", "ts", "util_pct", "mem_used_bytes", "power_w", "sm_active"
    )
    rollups: list[GpuRollup] = []
    for gpu_id, gpu_rows in _by_first(rows.iterator(chunk_size=20_000)).items():
        ts = _seconds(gpu_rows, 1)
        util, mem, power, sm = (_floats(gpu_rows, i) for i in (2, 3, 4, 5))
        for resolution, bucket_start, idx in _buckets(ts):
            rollups.append(
                GpuRollup(
                    gpu_id=gpu_id,
                    resolution=resolution,
                    bucket_start=bucket_start,
                    sample_count=int(idx.size),
                    util_mean_pct=float(util[idx].mean()),
                    util_p95_pct=float(np.percentile(util[idx], 95)),
                    util_max_pct=float(util[idx].max()),
                    mem_used_mean_bytes=int(mem[idx].mean()),
                    mem_used_max_bytes=int(mem[idx].max()),
                    power_mean_w=_nanmean(power[idx]),
                    sm_active_mean=_nanmean(sm[idx]),
                    idle_minutes=_idle_minutes(ts[idx], util[idx]),
                )
            )
    return _rollups_replace(GpuRollup, rollups, h0, h1, "gpu_id", ids, batch_size=2000)


def _idle_minutes(ts: np.ndarray, util: np.ndarray) -> int:
    """How many clock minutes of these samples peaked below IDLE_UTIL_PCT."""
    minute = np.floor(ts / 60).astype(np.int64)
    order = np.argsort(minute, kind="stable")
    _keys, starts = np.unique(minute[order], return_index=True)
    peaks = np.maximum.reduceat(util[order], starts)
    return int((peaks < IDLE_UTIL_PCT).sum())


# -- vLLM engine ----------------------------------------------------------------------------


def engine_rollups_compute(
    *, start: datetime, end: datetime, deployment_ids: Iterable[int] | None = None
) -> int:
    """Recompute engine rollups of the hours covering [start, end]; returns buckets written."""
    h0, h1 = hours_covering(start, end)
    ids = None if deployment_ids is None else list(deployment_ids)
    samples = _only(
        EngineSample.objects.filter(ts__gte=h0 - ENGINE_LOOKBACK, ts__lt=h1), "deployment_id", ids
    )
    fields = (
        "deployment_id", "instance", "ts", "num_requests_running", "num_requests_waiting",
        "kv_cache_usage", *ENGINE_COUNTERS, "histograms",
    )  # fmt: skip
    series: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for values in (
        samples.order_by("deployment_id", "instance", "ts")
        .values(*fields)
        .iterator(chunk_size=5_000)
    ):
        series[values["deployment_id"]][values["instance"]].append(values)
    rollups = [
        rollup
        for deployment_id, instances in series.items()
        for rollup in _engine_deployment_rollups(deployment_id, instances, h0, h1)
    ]
    return _rollups_replace(EngineRollup, rollups, h0, h1, "deployment_id", ids, batch_size=1000)


def _engine_deployment_rollups(
    deployment_id: int,
    instances: dict[str, list[dict[str, Any]]],
    h0: datetime,
    h1: datetime,
) -> Iterator[EngineRollup]:
    # bucket key (resolution, start) -> accumulated values over the instances
    acc: dict[tuple[str, datetime], dict[str, Any]] = {}
    for samples in instances.values():
        inside = [s for s in samples if s["ts"] >= h0]
        if not inside:
            continue
        ts = np.array([s["ts"].timestamp() for s in inside])
        running = np.array([s["num_requests_running"] for s in inside], dtype=float)
        waiting = np.array([s["num_requests_waiting"] for s in inside], dtype=float)
        kv = np.array(
            [np.nan if s["kv_cache_usage"] is None else s["kv_cache_usage"] for s in inside]
        )
        for resolution, bucket_start, idx in _buckets(ts):
            bucket = acc.setdefault((resolution, bucket_start), _empty_engine_bucket())
            bucket["sample_count"] += int(idx.size)
            bucket["running_mean"] += float(running[idx].mean())
            bucket["running_max"] += float(running[idx].max())
            bucket["waiting_mean"] += float(waiting[idx].mean())
            bucket["waiting_max"] += float(waiting[idx].max())
            kv_mean = _nanmean(kv[idx])
            if kv_mean is not None:
                bucket["kv_means"].append(kv_mean)
                bucket["kv_max"] = max(bucket["kv_max"] or 0.0, float(np.nanmax(kv[idx])))
        _credit_increases(samples, h0, acc)
    for (resolution, bucket_start), bucket in sorted(acc.items()):
        if bucket["sample_count"] == 0:
            continue  # only increases credited before the first in-window sample
        histograms: dict[str, Histogram] = bucket["histograms"]
        quantiles = {
            field: _round(histograms[name].quantile(q)) if name in histograms else None
            for field, name, q in ENGINE_QUANTILES
        }
        spec = {
            field: bucket["counters"].get(field)
            for field in ("spec_decode_drafts", "spec_decode_draft_tokens",
                          "spec_decode_accepted_tokens")
        }  # fmt: skip
        kv_means = bucket["kv_means"]
        yield EngineRollup(
            deployment_id=deployment_id,
            resolution=resolution,
            bucket_start=bucket_start,
            sample_count=bucket["sample_count"],
            running_mean=bucket["running_mean"],
            running_max=bucket["running_max"],
            waiting_mean=bucket["waiting_mean"],
            waiting_max=bucket["waiting_max"],
            kv_cache_usage_mean=sum(kv_means) / len(kv_means) if kv_means else None,
            kv_cache_usage_max=bucket["kv_max"],
            prompt_tokens=bucket["counters"].get("prompt_tokens", 0.0),
            generation_tokens=bucket["counters"].get("generation_tokens", 0.0),
            requests=bucket["counters"].get("requests", 0.0),
            preemptions=bucket["counters"].get("preemptions", 0.0),
            histograms={name: hist.to_json() for name, hist in histograms.items()},
            **spec,
            **quantiles,
        )


def _empty_engine_bucket() -> dict[str, Any]:
    return {
        "sample_count": 0, "running_mean": 0.0, "running_max": 0.0, "waiting_mean": 0.0,
        "waiting_max": 0.0, "kv_means": [], "kv_max": None, "counters": {}, "histograms": {},
    }  # fmt: skip


def _credit_increases(
    samples: Sequence[dict[str, Any]], h0: datetime, acc: dict[tuple[str, datetime], Any]
) -> None:
    """Counter increases and histogram windows between consecutive scrapes of one server."""
    previous: dict[str, float] = {}
    previous_hists: dict[str, Histogram] | None = None
    for sample in samples:
        increases: dict[str, float] = {}
        for field, name in ENGINE_COUNTERS.items():
            value = sample[field]
            if value is None:
                continue
            if field in previous:
                before = previous[field]
                increases[name] = value - before if value >= before else value
            previous[field] = value
        windows: dict[str, Histogram] = {}
        hists = _histograms(sample["histograms"])
        if hists is not None:
            if previous_hists is not None:
                for name, hist in hists.items():
                    earlier = previous_hists.get(name)
                    if earlier is not None:
                        windows[name] = hist.minus(earlier)
            previous_hists = hists
        if sample["ts"] < h0:
            continue  # the baseline before the window
        for resolution in (MINUTE, HOUR):
            key = (resolution, _floor(sample["ts"], BUCKET_S[resolution]))
            bucket = acc.setdefault(key, _empty_engine_bucket())
            counters = bucket["counters"]
            for name, value in increases.items():
                counters[name] = counters.get(name, 0.0) + value
            merged: dict[str, Histogram] = bucket["histograms"]
            for name, window in windows.items():
                try:
                    merged[name] = merged[name].plus(window) if name in merged else window
                except VllmMetricsError:
                    merged[name] = window  # bucket bounds changed (a vLLM upgrade)


def _histograms(raw: Any) -> dict[str, Histogram] | None:
    if not isinstance(raw, dict):
        return None
    parsed = {}
    for name, value in raw.items():
        try:
            parsed[name] = Histogram.from_json(value)
        except VllmMetricsError:
            continue
    return parsed


# -- requests -------------------------------------------------------------------------------


def request_rollups_compute(
    *, start: datetime, end: datetime, deployment_ids: Iterable[int] | None = None
) -> int:
    """Recompute request rollups of the hours covering [start, end]; returns buckets written."""
    h0, h1 = hours_covering(start, end)
    ids = None if deployment_ids is None else list(deployment_ids)
    written = 0
    window_start = h0
    while window_start < h1:
        window_end = min(h1, window_start + REQUEST_WINDOW)
        written += _request_rollups_window(window_start, window_end, ids)
        window_start = window_end
    return written


def _request_rollups_window(h0: datetime, h1: datetime, deployment_ids: list[int] | None) -> int:
    records = _only(
        RequestRecord.objects.filter(arrival_ts__gte=h0, arrival_ts__lt=h1),
        "deployment_id",
        deployment_ids,
    )
    fields = ("deployment_id", "arrival_ts", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s",
              "status")  # fmt: skip
    rollups: list[RequestRollup] = []
    by_deployment = _by_first(records.values_list(*fields).iterator(chunk_size=20_000))
    for deployment_id, rows in by_deployment.items():
        ts = _seconds(rows, 1)
        prompt, output, ttft, e2e = (_floats(rows, i) for i in (2, 3, 4, 5))
        errors = np.array([r[6] != "ok" for r in rows])
        for resolution, bucket_start, idx in _buckets(ts):
            rollups.append(
                RequestRollup(
                    deployment_id=deployment_id,
                    resolution=resolution,
                    bucket_start=bucket_start,
                    request_count=int(idx.size),
                    error_count=int(errors[idx].sum()),
                    prompt_tokens_sum=int(prompt[idx].sum()),
                    output_tokens_sum=int(output[idx].sum()),
                    prompt_tokens_p50=float(np.percentile(prompt[idx], 50)),
                    prompt_tokens_p99=float(np.percentile(prompt[idx], 99)),
                    output_tokens_p50=float(np.percentile(output[idx], 50)),
                    output_tokens_p99=float(np.percentile(output[idx], 99)),
                    ttft_p50_s=_nanpercentile(ttft[idx], 50),
                    ttft_p99_s=_nanpercentile(ttft[idx], 99),
                    e2e_p50_s=_nanpercentile(e2e[idx], 50),
                    e2e_p99_s=_nanpercentile(e2e[idx], 99),
                )
            )
    return _rollups_replace(
        RequestRollup, rollups, h0, h1, "deployment_id", deployment_ids, batch_size=2000
    )


# -- what is pending ------------------------------------------------------------------------


def rollups_pending_compute(*, limit: int = 500) -> dict[str, int]:
    """Roll up the hours touched by ingest batches and trace imports not rolled up yet."""
    written = {"gpu": 0, "engine": 0, "request": 0, "batches": 0, "imports": 0}
    batches = list(
        IngestBatch.objects.filter(rolled_up_at__isnull=True)
        .order_by("received_at")
        .values("id", "node_id", "min_ts", "max_ts")[:limit]
    )
    spans: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for batch in batches:
        if batch["min_ts"] is not None and batch["max_ts"] is not None:
            spans[batch["node_id"]].append(hours_covering(batch["min_ts"], batch["max_ts"]))
    for node_id, node_spans in spans.items():
        node = Node.objects.get(pk=node_id)
        gpu_ids = list(node.gpus.values_list("id", flat=True))
        deployment_ids = list(
            ModelDeployment.objects.filter(cluster_id=node.cluster_id).values_list("id", flat=True)
        )
        for h0, h1 in _merge(node_spans):
            written["gpu"] += gpu_rollups_compute(start=h0, end=h1 - _EPS, gpu_ids=gpu_ids)
            written["engine"] += engine_rollups_compute(
                start=h0, end=h1 - _EPS, deployment_ids=deployment_ids
            )
            written["request"] += request_rollups_compute(
                start=h0, end=h1 - _EPS, deployment_ids=deployment_ids
            )
    IngestBatch.objects.filter(pk__in=[b["id"] for b in batches]).update(
        rolled_up_at=timezone.now()
    )
    written["batches"] = len(batches)
    for trace_import in TraceImport.objects.filter(rolled_up_at__isnull=True)[:limit]:
        written["request"] += trace_import_rollup(trace_import=trace_import)
        written["imports"] += 1
    return written


def trace_import_rollup(*, trace_import: TraceImport) -> int:
    """Recompute the request rollups of the hours an import covers; marks it rolled up."""
    written = 0
    if trace_import.first_arrival_ts and trace_import.last_arrival_ts:
        written = request_rollups_compute(
            start=trace_import.first_arrival_ts,
            end=trace_import.last_arrival_ts,
            deployment_ids=[trace_import.deployment_id],
        )
    TraceImport.objects.filter(pk=trace_import.pk).update(rolled_up_at=timezone.now())
    return written


# -- helpers --------------------------------------------------------------------------------

_EPS = timedelta(microseconds=1)
_Row = TypeVar("_Row", bound=models.Model)


def _only(rows: QuerySet[_Row], column: str, ids: list[int] | None) -> QuerySet[_Row]:
    """`rows` whose `column` is one of `ids`; all of them when `ids` is None."""
    return rows if ids is None else rows.filter(**{f"{column}__in": ids})


def _rollups_replace(
    model: type[_Row],
    rollups: list[_Row],
    h0: datetime,
    h1: datetime,
    column: str,
    ids: list[int] | None,
    *,
    batch_size: int,
) -> int:
    """Delete `model`'s buckets in [h0, h1) (of `ids` only, when given) and store `rollups`
    instead, in one transaction; returns how many were stored."""
    with transaction.atomic():
        stale = model._default_manager.filter(bucket_start__gte=h0, bucket_start__lt=h1)
        _only(stale, column, ids).delete()
        model._default_manager.bulk_create(rollups, batch_size=batch_size)
    return len(rollups)


def _by_first(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[tuple[Any, ...]]]:
    """Rows grouped by their first value (a GPU's or a deployment's id), in the order read."""
    grouped: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        grouped[row[0]].append(row)
    return grouped


def _seconds(rows: Sequence[tuple[Any, ...]], index: int) -> np.ndarray:
    """Column `index` of `rows` (datetimes) as Unix seconds."""
    return np.array([r[index].timestamp() for r in rows])


def _floats(rows: Sequence[tuple[Any, ...]], index: int) -> np.ndarray:
    """Column `index` of `rows` as floats, None as NaN."""
    return np.array([np.nan if r[index] is None else r[index] for r in rows], dtype=float)


def _buckets(ts: np.ndarray) -> Iterator[tuple[str, datetime, np.ndarray]]:
    """(resolution, bucket start, indexes of `ts` in that bucket) for minutes and hours."""
    for resolution, size in BUCKET_S.items():
        keys = np.floor(ts / size).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        unique, starts = np.unique(keys[order], return_index=True)
        ends = [*starts[1:], len(order)]
        for key, begin, finish in zip(unique, starts, ends, strict=True):
            yield resolution, datetime.fromtimestamp(int(key) * size, UTC), order[begin:finish]


def _floor(ts: datetime, size: int) -> datetime:
    seconds = math.floor(ts.timestamp() / size) * size
    return datetime.fromtimestamp(seconds, UTC)


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None


def _nanpercentile(values: np.ndarray, q: float) -> float | None:
    finite = values[~np.isnan(values)]
    return float(np.percentile(finite, q)) if finite.size else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 9)
