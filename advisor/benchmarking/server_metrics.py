"""The server's own view of a run: `/metrics` before, during and after, via probes' parser.

`probes.agent.vllm_metrics` parses and diffs the snapshots (one parser for the agent and the
benchmarks); this module turns a before/after pair plus the samples taken during the run into
a flat, JSON-safe dict. Spec-decode fields use `vllm bench serve`'s names and units
(`spec_decode_acceptance_rate` in percent, `spec_decode_acceptance_length` = 1 + accepted
tokens per draft). Samples are cheap gauges (requests running and waiting, KV-cache usage)
used for peaks and means over the window; they can miss a run shorter than the sampling
period, the step counters (`engine_steps`, `mean_tokens_per_step`) cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from probes.agent.vllm_metrics import (
    VllmSnapshot,
    fetch_snapshot,
    snapshot_delta,
)

PER_POSITION = "spec_decode_num_accepted_tokens_per_pos"
ITERATION_TOKENS = "iteration_tokens_total"  # histogram of tokens per engine step
SERVER_QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p99", 0.99))


@dataclass(frozen=True)
class GaugeSample:
    """Gauges at `at_s` seconds after the start of the timed run."""

    at_s: float
    running: float | None
    waiting: float | None
    kv_cache_usage: float | None


async def scrape(base_url: str, model: str, timeout_s: float) -> VllmSnapshot:
    """One snapshot, fetched and parsed off the event loop (a scrape must not stall timing)."""
    return await asyncio.to_thread(fetch_snapshot, base_url, model_name=model, timeout_s=timeout_s)


def sample_of(snapshot: VllmSnapshot, at_s: float) -> GaugeSample:
    return GaugeSample(
        at_s=at_s,
        running=snapshot.num_requests_running,
        waiting=snapshot.num_requests_waiting,
        kv_cache_usage=snapshot.kv_cache_usage,
    )


def metrics_summary(
    before: VllmSnapshot,
    after: VllmSnapshot,
    samples: Sequence[GaugeSample],
    *,
    failures: Sequence[str] = (),
) -> dict[str, Any]:
    """Counter increases, windowed server-side latencies and gauge peaks over the run.

    `failures`: why the samples that were tried during the run and not taken failed; their
    count and the last reason are kept, so a peak read off few samples can be told apart.
    """
    delta = snapshot_delta(before, after)
    out: dict[str, Any] = {
        "window_s": delta.interval_s,
        "counter_reset": delta.counter_reset,
        "prompt_tokens": delta.prompt_tokens,
        "generation_tokens": delta.generation_tokens,
        "preemptions": delta.preemptions,
        "requests_finished": delta.requests_finished,
    }
    queries = delta.counter("prefix_cache_queries")
    out["prefix_cache_hit_rate"] = (
        delta.counter("prefix_cache_hits") / queries if queries > 0 else None
    )
    drafts = delta.counters.get("spec_decode_num_drafts")
    draft_tokens = delta.counters.get("spec_decode_num_draft_tokens")
    accepted = delta.counters.get("spec_decode_num_accepted_tokens")
    out["spec_decode_num_drafts"] = drafts
    out["spec_decode_draft_tokens"] = draft_tokens
    out["spec_decode_accepted_tokens"] = accepted
    rate = delta.spec_decode_acceptance_rate
    out["spec_decode_acceptance_rate"] = None if rate is None else rate * 100.0
    out["spec_decode_acceptance_length"] = delta.spec_decode_mean_acceptance_length
    out["spec_decode_per_position_acceptance_rates"] = _per_position(before, after, drafts)
    # tokens per engine step: how many sequences the scheduler really batched (decode steps
    # carry one token per sequence), read off counters, so it cannot miss a short run
    steps = delta.histograms.get(ITERATION_TOKENS)
    out["engine_steps"] = steps.count if steps is not None else None
    out["mean_tokens_per_step"] = steps.mean if steps is not None else None
    for short in ("ttft", "itl", "e2e", "queue"):
        for label, q in SERVER_QUANTILES:
            value = delta.quantile_s(short, q)
            out[f"server_{label}_{short}_ms"] = None if value is None else value * 1000.0
    gauges = [sample_of(before, 0.0), *samples, sample_of(after, delta.interval_s)]
    out.update(_gauge_stats(gauges, samples))
    out["samples_failed"] = len(failures)
    out["last_sample_error"] = failures[-1] if failures else None
    return out


def _per_position(before: VllmSnapshot, after: VllmSnapshot, drafts: float | None) -> list[float]:
    if not drafts:
        return []
    old = before.counter_breakdowns.get(PER_POSITION, {})
    new = after.counter_breakdowns.get(PER_POSITION, {})

    def position(key: str) -> float:
        try:
            return float(key)
        except ValueError:
            return float("inf")

    return [max(0.0, new[key] - old.get(key, 0.0)) / drafts for key in sorted(new, key=position)]


def _gauge_stats(
    everything: Sequence[GaugeSample], during: Sequence[GaugeSample]
) -> dict[str, float | int | None]:
    def values(name: str, source: Sequence[GaugeSample]) -> list[float]:
        return [v for v in (getattr(s, name) for s in source) if v is not None]

    running_all, running_during = values("running", everything), values("running", during)
    kv_all = values("kv_cache_usage", everything)
    waiting_all = values("waiting", everything)
    return {
        "samples": len(during),
        "max_num_requests_running": max(running_all, default=None),
        "mean_num_requests_running": (
            sum(running_during) / len(running_during) if running_during else None
        ),
        "max_num_requests_waiting": max(waiting_all, default=None),
        "max_kv_cache_usage": max(kv_all, default=None),
    }
