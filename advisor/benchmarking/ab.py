"""A/B of engine configurations on one local vLLM node: restart with each config, same workload.

Until the rollout issue's node controller exists, switching configuration means stopping the
local vLLM process and starting it with the candidate's engine args (`probes.agent.
vllm_process`, the same supervisor the agent uses). Each variant runs on the same port, served
model name and workload, on the launch's checkpoint or its own (`Variant.model`, e.g. an AWQ
one: every variant's checkpoint is checked present before anything starts); the process is
always stopped afterwards. A variant that does not start gives a
failed result with the tail of its log; the others still run. A cancel, or an unexpected
exception while a variant is measured (a bug), ends the A/B: the variants measured so far keep
their results and the rest get an unmeasured one saying why (`measure_in_turn`, which the
controller-switched A/B in `advisor.services.benchmark_runs` shares).

`compare(baseline, candidate)` gives ratios (candidate / baseline) of throughput and latency
figures, e.g. `output_throughput_ratio` 3.2 means the candidate streamed 3.2x the tokens/s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
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
from probes.agent.model_config import checkpoint_missing
from probes.agent.vllm_process import VllmLaunch, VllmProcess, VllmStartError

log = logging.getLogger(__name__)

COMPARED: tuple[str, ...] = (
    "output_throughput", "request_throughput", "total_token_throughput",
    "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms",
    "median_itl_ms", "p99_itl_ms", "median_e2el_ms", "p99_e2el_ms",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """A named configuration: engine args added to the base launch's, and its own checkpoint.

    `model` (a local path or a Hugging Face id, e.g. the AWQ checkpoint the quantization
    strategy recommends) replaces the launch's `--model`; the served model name stays the
    launch's, so the benchmark client addresses every variant by the same name.
    """

    name: str
    engine_args: tuple[str, ...] = ()
    model: str | None = None


class CheckpointMissing(RuntimeError):
    """A variant names a checkpoint this node does not hold; nothing was started or stopped."""


@dataclass(frozen=True)
class VariantRun:
    variant: Variant
    result: BenchmarkResult
    ready_after_s: float | None  # process start -> /health 200 (None: it did not start)


Stop = tuple[str, str]  # (status, why): what the variants after one that ends the A/B get
CANCELLED: Stop = ("cancelled", "cancelled")


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
    """Start, benchmark and stop each variant in turn (blocking; minutes on a CPU node).

    Raises `CheckpointMissing` before anything starts when a variant's checkpoint is absent.
    """
    problem = missing_checkpoint(variants, {**os.environ, **launch.env})
    if problem is not None:
        raise CheckpointMissing(problem)
    target = Target(launch.base_url, launch.served_name, api=api)
    not_run = partial(unmeasured, target, workload)

    def measure(_part: int, variant: Variant) -> tuple[VariantRun, Stop | None]:
        config = replace(
            launch,
            model=variant.model or launch.model,
            engine_args=(*launch.engine_args, *variant.engine_args),
        )
        process = VllmProcess(config, log_dir / f"ab-{variant.name}-{launch.port}.log")
        started = time.perf_counter()
        try:
            try:
                process.start(ready_timeout_s=ready_timeout_s)
            except VllmStartError as exc:
                failed = not_run("failed", f"variant {variant.name!r} did not start: {exc}")
                return VariantRun(variant, failed, None), None  # the others still run
            ready_after_s = time.perf_counter() - started
            result = run_benchmark(target, workload, limits=limits, options=options, cancel=cancel)
        finally:
            process.stop()
        return VariantRun(variant, result, ready_after_s), None

    return measure_in_turn(variants, measure, not_run=not_run, cancel=cancel)


def missing_checkpoint(variants: Sequence[Variant], env: Mapping[str, str]) -> str | None:
    """Why the first variant naming an absent checkpoint cannot run here, else None.

    `env`: the environment the vLLM process gets (where its Hugging Face cache is).
    """
    for variant in variants:
        if variant.model:
            problem = checkpoint_missing(variant.model, env)
            if problem is not None:
                return f"variant {variant.name!r}: {problem}; nothing was stopped or started"
    return None


def measure_in_turn(
    variants: Sequence[Variant],
    measure: Callable[[int, Variant], tuple[VariantRun, Stop | None]],
    *,
    not_run: Callable[[str, str], BenchmarkResult],
    cancel: CancelCheck | None = None,
) -> list[VariantRun]:
    """Measure each variant in turn until one ends the A/B; the rest get `not_run(*stop)`.

    `measure(part, variant)` gives the variant's run and, when the A/B cannot go on after it,
    the `Stop` the remaining variants are stored with. A cancel seen before a variant ends the
    A/B too. So does an exception from `measure` (a bug): that variant gets a `failed` result
    naming the exception, its traceback is logged, and the runs already measured are kept.
    Only `Exception` is caught: KeyboardInterrupt and SystemExit go through (Celery's
    SoftTimeLimitExceeded is an Exception, but the bench task sets no soft time limit).
    """
    runs: list[VariantRun] = []
    stop: Stop | None = None
    for part, variant in enumerate(variants):
        if stop is None and cancel is not None and cancel():
            stop = CANCELLED
        if stop is not None:
            runs.append(VariantRun(variant, not_run(*stop), None))
            continue
        try:
            run, stop = measure(part, variant)
        except Exception as exc:  # a bug must not lose the variants already measured
            log.exception("A/B variant %r raised while it was measured", variant.name)
            error = f"variant {variant.name!r}: internal error: {exc!r}"
            run = VariantRun(variant, not_run("failed", error), None)
            stop = ("failed", f"not run: {error}")
        runs.append(run)
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
