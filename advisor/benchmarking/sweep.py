"""Sweeps over request rates or concurrencies, and the goodput search.

`asweep` runs one benchmark per value, in order, on the same target; it stops early when a
point fails (the endpoint is gone) or is cancelled, and keeps going after a point that only hit
its duration cap. `agoodput_search` finds the highest request rate whose run meets the SLO
(`Slo`: per-request TTFT/TPOT/e2e limits and the share of requests that must meet them):
it doubles the rate from `min_rate_rps` until a run misses (or `max_rate_rps` passes), then
bisects geometrically between the last pass and the first miss until they are within
`rel_tol` of each other or `max_runs` runs were spent. Load tests are noisy: the answer is
"the highest rate seen to pass", with every probe kept for the reader.

`evaluate` (tests, or a caller with its own runner) replaces the real run of one spec.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from advisor.benchmarking.results import BenchmarkResult
from advisor.benchmarking.runner import (
    BenchmarkConfigError,
    CancelCheck,
    Limits,
    RunOptions,
    Target,
    arun_benchmark,
)
from advisor.benchmarking.summary import Slo
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.engine.workload import Workload

SweepKind = Literal["rate", "concurrency"]
SweepStatus = Literal["completed", "failed", "cancelled"]
Evaluate = Callable[[WorkloadSpec], Awaitable[BenchmarkResult]]


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: the swept value and its result; `meets_slo` None without an SLO."""

    value: float
    spec: WorkloadSpec
    result: BenchmarkResult
    meets_slo: bool | None


@dataclass(frozen=True)
class SweepResult:
    kind: SweepKind
    status: SweepStatus
    error: str
    points: tuple[SweepPoint, ...]


@dataclass(frozen=True)
class GoodputSearch:
    """The highest rate seen to meet the SLO (None: even `min_rate_rps` missed it)."""

    slo: Slo
    status: SweepStatus
    reason: str
    best_rate_rps: float | None
    best: SweepPoint | None
    probes: tuple[SweepPoint, ...]


def meets(result: BenchmarkResult, slo: Slo) -> bool:
    attainment = result.summary.get("slo_attainment")
    return (
        result.status == "completed"
        and isinstance(attainment, int | float)
        and attainment >= slo.min_attainment
    )


def _evaluator(
    target: Target,
    trace: Workload | None,
    limits: Limits | None,
    options: RunOptions,
    cancel: CancelCheck | None,
) -> Evaluate:
    async def evaluate(spec: WorkloadSpec) -> BenchmarkResult:
        return await arun_benchmark(
            target, spec.build(trace), limits=limits, options=options, cancel=cancel
        )

    return evaluate


async def asweep(
    target: Target,
    spec: WorkloadSpec,
    kind: SweepKind,
    values: Sequence[float],
    *,
    trace: Workload | None = None,
    limits: Limits | None = None,
    options: RunOptions | None = None,
    cancel: CancelCheck | None = None,
    evaluate: Evaluate | None = None,
) -> SweepResult:
    """Run `spec` at each rate (rps) or concurrency in `values`, in the order given."""
    if kind not in ("rate", "concurrency"):
        raise BenchmarkConfigError(f"kind: expected rate or concurrency, got {kind!r}")
    if not values:
        raise BenchmarkConfigError("values: give at least one rate or concurrency")
    opts = options or RunOptions()
    run = evaluate or _evaluator(target, trace, limits, opts, cancel)
    specs = [spec.at_rate(v) if kind == "rate" else spec.at_concurrency(int(v)) for v in values]
    points: list[SweepPoint] = []
    for value, point_spec in zip(values, specs, strict=True):
        result = await run(point_spec)
        verdict = None if opts.slo is None else meets(result, opts.slo)
        points.append(SweepPoint(float(value), point_spec, result, verdict))
        if result.status in ("failed", "cancelled"):
            return SweepResult(kind, result.status, result.error, tuple(points))
    return SweepResult(kind, "completed", "", tuple(points))


async def agoodput_search(
    target: Target,
    spec: WorkloadSpec,
    slo: Slo,
    *,
    min_rate_rps: float,
    max_rate_rps: float,
    rel_tol: float = 0.1,
    max_runs: int = 8,
    trace: Workload | None = None,
    limits: Limits | None = None,
    options: RunOptions | None = None,
    cancel: CancelCheck | None = None,
    evaluate: Evaluate | None = None,
) -> GoodputSearch:
    """Highest rate meeting `slo` (see the module docstring for the search)."""
    if not (0 < min_rate_rps <= max_rate_rps and math.isfinite(max_rate_rps)):
        raise BenchmarkConfigError(
            f"min_rate_rps/max_rate_rps: need 0 < min <= max < inf, got "
            f"{min_rate_rps!r}, {max_rate_rps!r}"
        )
    if not 0 < rel_tol < 1:
        raise BenchmarkConfigError(f"rel_tol: must be in (0, 1), got {rel_tol!r}")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise BenchmarkConfigError(f"max_runs: must be an integer >= 1, got {max_runs!r}")
    opts = replace(options or RunOptions(), slo=slo)
    run = evaluate or _evaluator(target, trace, limits, opts, cancel)
    probes: list[SweepPoint] = []
    passed: SweepPoint | None = None
    missed: SweepPoint | None = None
    rate = min_rate_rps
    reason = f"max_runs ({max_runs}) reached"
    while len(probes) < max_runs:
        point_spec = spec.at_rate(rate)
        result = await run(point_spec)
        point = SweepPoint(rate, point_spec, result, meets(result, slo))
        probes.append(point)
        if result.status in ("failed", "cancelled"):
            return GoodputSearch(slo, result.status, result.error, _rate(passed), passed,
                                 tuple(probes))  # fmt: skip
        if point.meets_slo:
            if passed is None or rate > passed.value:
                passed = point
            if missed is not None and missed.value <= rate:
                missed = None  # noise: a higher rate passed after a lower one missed
        elif missed is None or rate < missed.value:
            missed = point
        if passed is None:
            reason = f"the lowest rate {min_rate_rps:g} rps already misses the SLO"
            break
        if missed is None:
            if rate >= max_rate_rps:
                reason = f"max_rate_rps {max_rate_rps:g} meets the SLO"
                break
            rate = min(rate * 2.0, max_rate_rps)
            continue
        if missed.value / passed.value - 1.0 <= rel_tol:
            reason = f"bracketed within {rel_tol:.0%}"
            break
        rate = math.sqrt(passed.value * missed.value)
    return GoodputSearch(slo, "completed", reason, _rate(passed), passed, tuple(probes))


def _rate(point: SweepPoint | None) -> float | None:
    return None if point is None else point.value
