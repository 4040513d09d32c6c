"""A/B of engine configurations on one local vLLM node: restart with each config, same workload.

Until the rollout issue's node controller exists, switching configuration means stopping the
local vLLM process and starting it with the candidate's engine args (`probes.agent.
vllm_process`, the same supervisor the agent uses). Each variant runs on the same port, model
and workload; the process is always stopped afterwards. A variant that does not start gives a
failed result with the tail of its log; the others still run.

`compare(baseline, candidate)` gives ratios (candidate / baseline) of throughput and latency
figures, e.g. `output_throughput_ratio` 3.2 means the candidate streamed 3.2x the tokens/s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from advisor.benchmarking.results import BenchmarkResult
from advisor.benchmarking.runner import (
    CancelCheck,
    Limits,
    RunOptions,
    Target,
    run_benchmark,
)
from advisor.benchmarking.stream import Api
from advisor.benchmarking.summary import summarize
from advisor.engine.workload import Workload
from probes.agent.vllm_process import VllmLaunch, VllmProcess, VllmStartError

COMPARED: tuple[str, ...] = (
    "output_throughput", "request_throughput", "total_token_throughput",
    "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms",
    "median_itl_ms", "p99_itl_ms", "median_e2el_ms", "p99_e2el_ms",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """A named configuration: engine args added to the base launch's."""

    name: str
    engine_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantRun:
    variant: Variant
    result: BenchmarkResult
    ready_after_s: float | None  # process start -> /health 200 (None: it did not start)


def run_variants(
    launch: VllmLaunch,
    variants: Sequence[Variant],
    workload: Workload,
    *,
    log_dir: Path,
    api: Api = "completions",
    limits: Limits | None = None,
    options: RunOptions | None = None,
    ready_timeout_s: float = 300.0,
    cancel: CancelCheck | None = None,
) -> list[VariantRun]:
    """Start, benchmark and stop each variant in turn (blocking; minutes on a CPU node)."""
    target = Target(launch.base_url, launch.served_name, api=api)
    runs: list[VariantRun] = []
    for variant in variants:
        if cancel is not None and cancel():
            cancelled = unmeasured(target, workload, "cancelled", "cancelled")
            runs.append(VariantRun(variant, cancelled, None))
            continue
        config = replace(launch, engine_args=(*launch.engine_args, *variant.engine_args))
        process = VllmProcess(config, log_dir / f"ab-{variant.name}-{launch.port}.log")
        started = time.perf_counter()
        try:
            process.start(ready_timeout_s=ready_timeout_s)
        except VllmStartError as exc:
            process.stop()
            error = f"variant {variant.name!r} did not start: {exc}"
            runs.append(VariantRun(variant, unmeasured(target, workload, "failed", error), None))
            continue
        ready_after_s = time.perf_counter() - started
        try:
            result = run_benchmark(target, workload, limits=limits, options=options, cancel=cancel)
        finally:
            process.stop()
        runs.append(VariantRun(variant, result, ready_after_s))
    return runs


def compare(baseline: BenchmarkResult, candidate: BenchmarkResult) -> dict[str, Any]:
    """Candidate / baseline ratio of each compared figure (None where either is missing)."""
    out: dict[str, Any] = {}
    for name in COMPARED:
        base, cand = baseline.summary.get(name), candidate.summary.get(name)
        ok = isinstance(base, int | float) and isinstance(cand, int | float) and base > 0
        out[f"{name}_ratio"] = cand / base if ok else None  # type: ignore[operator]
    for name in ("spec_decode_acceptance_rate", "spec_decode_acceptance_length", "preemptions"):
        out[f"baseline_{name}"] = baseline.server_metrics.get(name)
        out[f"candidate_{name}"] = candidate.server_metrics.get(name)
    return out


def unmeasured(target: Target, workload: Workload, status: str, error: str) -> BenchmarkResult:
    """A variant's result when it was never measured (`cancelled` or `failed`, with why)."""
    return BenchmarkResult(
        status="cancelled" if status == "cancelled" else "failed",
        error=error,
        target=target.to_json(),
        workload_name=workload.name,
        started_at_unix_s=time.time(),
        duration_s=0.0,
        requests=(),
        summary=summarize([], 0.0),
    )
