"""Measure a done rollout's realized savings: its nodes' telemetry before vs after the change.

For each window (`before`: the `window_s` before the rollout started; `after`: the
`window_s` after it finished), over the rollout's nodes:
- `gpus`: GPUs in use, i.e. whose mean memory use was at least `IN_USE_MEMORY_SHARE` of
  their memory (a GPU freed by the change still reports, idle and empty);
- `util_pct`: mean NVML utilization of those GPUs;
- `usd_per_hour`: their price sheet prices summed (None when one is unpriced);
- `throughput_tok_s`: output tokens per second of the vLLM servers on those nodes (the mean
  per-scrape rate of each server, summed over servers);
- `ttft_p95_s`, `tpot_p95_s`: p95 of the window's TTFT and per-request TPOT histograms
  (each server's last cumulative histogram minus its first, summed over servers);
- `usd_per_1m_tokens`: USD per hour over output tokens per hour, times 1M.
Raw samples are used where present, else 1-minute GPU rollups. Missing data is written down
(`notes`) and the entry ends `no_data` when neither window has a cost or a throughput.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count
from django.utils import timezone

from advisor.models import LedgerEntry, LedgerStatus
from advisor.rollouts.ledger import realize
from probes.agent.vllm_metrics import Histogram, VllmMetricsError
from probes.gpu_kinds import prices_for
from probes.models import EngineSample, Gpu, GpuRollup, GpuSample, RollupResolution

IN_USE_MEMORY_SHARE = 0.10
TPOT_KEYS = ("request_time_per_output_token_seconds", "inter_token_latency_seconds")


def window_figures(
    *, node_ids: Iterable[int], start: datetime, end: datetime
) -> tuple[dict[str, Any], list[str]]:
    """The measured figures of some nodes over [start, end), and what was missing."""
    notes: list[str] = []
    gpus = list(Gpu.objects.filter(node_id__in=list(node_ids), mig_parent__isnull=True))
    usage = _gpu_usage([g.id for g in gpus], start, end)
    in_use = [
        g for g in gpus if g.id in usage and usage[g.id][1] >= IN_USE_MEMORY_SHARE * g.memory_bytes
    ]
    figures: dict[str, Any] = {}
    if not usage:
        notes.append("no GPU telemetry")
    else:
        figures["gpus"] = len(in_use)
        if in_use:
            figures["util_pct"] = sum(usage[g.id][0] for g in in_use) / len(in_use)
        prices = prices_for({g.model_name for g in in_use})
        unpriced = sorted(
            {g.model_name for g in in_use if prices[g.model_name].usd_per_gpu_hour is None}
        )
        if unpriced:
            notes.append(f"no price for {', '.join(unpriced)}")
        else:
            figures["usd_per_hour"] = sum(
                prices[g.model_name].usd_per_gpu_hour or 0.0 for g in in_use
            )
    figures.update(_engine_figures(list(node_ids), start, end, notes))
    usd, tokens = figures.get("usd_per_hour"), figures.get("throughput_tok_s")
    if isinstance(usd, float) and isinstance(tokens, float) and tokens > 0:
        figures["usd_per_1m_tokens"] = usd / (tokens * 3600.0) * 1e6
    return figures, notes


def _gpu_usage(
    gpu_ids: list[int], start: datetime, end: datetime
) -> dict[int, tuple[float, float]]:
    """GPU id -> (mean util %, mean memory used bytes) over the window."""
    usage: dict[int, tuple[float, float]] = {}
    for row in (
        GpuSample.objects.filter(gpu_id__in=gpu_ids, ts__gte=start, ts__lt=end)
        .values("gpu_id")
        .annotate(util=Avg("util_pct"), mem=Avg("mem_used_bytes"))
    ):
        usage[row["gpu_id"]] = (float(row["util"]), float(row["mem"]))
    missing = [g for g in gpu_ids if g not in usage]
    if missing:
        sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for rollup in GpuRollup.objects.filter(
            gpu_id__in=missing,
            resolution=RollupResolution.MINUTE,
            bucket_start__gte=start,
            bucket_start__lt=end,
        ).only("gpu_id", "sample_count", "util_mean_pct", "mem_used_mean_bytes"):
            acc = sums[rollup.gpu_id]
            acc[0] += rollup.sample_count
            acc[1] += rollup.util_mean_pct * rollup.sample_count
            acc[2] += rollup.mem_used_mean_bytes * rollup.sample_count
        for gpu_id, (n, util, mem) in sums.items():
            if n:
                usage[gpu_id] = (util / n, mem / n)
    return usage


def _engine_figures(
    node_ids: list[int], start: datetime, end: datetime, notes: list[str]
) -> dict[str, Any]:
    samples = EngineSample.objects.filter(node_id__in=node_ids, ts__gte=start, ts__lt=end)
    rates = samples.values("instance").annotate(rate=Avg("generation_tokens_per_s"), n=Count("ts"))
    figures: dict[str, Any] = {}
    known = [r["rate"] for r in rates if r["rate"] is not None]
    if not known:
        notes.append("no vLLM throughput samples")
    else:
        figures["throughput_tok_s"] = float(sum(known))
    windows: dict[str, list[Histogram]] = {"ttft": [], "tpot": []}
    instances = (
        samples.exclude(histograms__isnull=True).values_list("instance", flat=True).distinct()
    )
    for instance in instances:
        with_hist = (
            samples.filter(instance=instance).exclude(histograms__isnull=True).order_by("ts")
        )
        first, last = with_hist.first(), with_hist.last()
        if first is None or last is None or first.ts == last.ts:
            continue
        for short, keys in (("ttft", ("time_to_first_token_seconds",)), ("tpot", TPOT_KEYS)):
            window = _histogram_window(first.histograms or {}, last.histograms or {}, keys)
            if window is not None:
                windows[short].append(window)
    for short, found in windows.items():
        merged = _merge(found)
        p95 = merged.quantile(0.95) if merged is not None else None
        if p95 is None:
            notes.append(f"no {short.upper()} histograms")
        else:
            figures[f"{short}_p95_s"] = p95
    return figures


def _histogram_window(
    first: dict[str, Any], last: dict[str, Any], keys: tuple[str, ...]
) -> Histogram | None:
    for key in keys:
        if key in last:
            try:
                later = Histogram.from_json(last[key])
                return later.minus(Histogram.from_json(first[key])) if key in first else later
            except VllmMetricsError:
                return None
    return None


def _merge(histograms: list[Histogram]) -> Histogram | None:
    total: Histogram | None = None
    for hist in histograms:
        try:
            total = hist if total is None else total.plus(hist)
        except VllmMetricsError:
            continue  # a server with other bucket bounds: left out of the sum
    return total


def ledger_measure(*, entry_id: int, now: datetime | None = None) -> LedgerEntry:
    """Measure a waiting entry whose after-window has ended (idempotent: measured once)."""
    now = now or timezone.now()
    with transaction.atomic():
        entry = LedgerEntry.objects.select_for_update().select_related("rollout").get(id=entry_id)
        if entry.status != LedgerStatus.WAITING or entry.after_end > now:
            return entry
        node_ids = list(entry.rollout.targets.values_list("node_id", flat=True))
        before, notes_before = window_figures(
            node_ids=node_ids, start=entry.before_start, end=entry.before_end
        )
        after, notes_after = window_figures(
            node_ids=node_ids, start=entry.after_start, end=entry.after_end
        )
        realized = realize(entry.projection, before, after, entry.slo)
        entry.before, entry.after = before, after
        entry.realized = realized.to_json()
        entry.flags = list(realized.flags)
        entry.flagged = bool(realized.flags)
        entry.notes = [f"before: {n}" for n in notes_before] + [f"after: {n}" for n in notes_after]
        entry.notes += list(realized.notes)
        # Without a cost on both sides there are no savings to set beside the projection; a
        # latency regression alone is still worth showing (and flagged).
        has_cost = realized.basis is not None
        entry.status = LedgerStatus.MEASURED if has_cost or entry.flagged else LedgerStatus.NO_DATA
        entry.measured_at = now
        entry.save()
    return entry


def ledger_due_ids(*, now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        LedgerEntry.objects.filter(status=LedgerStatus.WAITING, after_end__lte=now).values_list(
            "id", flat=True
        )
    )
