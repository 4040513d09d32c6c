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


class GoodputPlan:
    """The goodput search as a plan a caller drives: `next_rate()`, run it, `record(point)`.

    Synchronous callers (a Celery task that stores each probe as it finishes) and
    `agoodput_search` share it. `next_rate()` is None once the search is over; `reason` then
    says why, `best` is the highest passing probe.
    """

    def __init__(
        self, *, min_rate_rps: float, max_rate_rps: float, rel_tol: float = 0.1,
        max_runs: int = 8,
    ) -> None:  # fmt: skip
        if not (0 < min_rate_rps <= max_rate_rps and math.isfinite(max_rate_rps)):
            raise BenchmarkConfigError(
                f"min_rate_rps/max_rate_rps: need 0 < min <= max < inf, got "
                f"{min_rate_rps!r}, {max_rate_rps!r}"
            )
        if not 0 < rel_tol < 1:
            raise BenchmarkConfigError(f"rel_tol: must be in (0, 1), got {rel_tol!r}")
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise BenchmarkConfigError(f"max_runs: must be an integer >= 1, got {max_runs!r}")
        self.min_rate_rps = min_rate_rps
        self.max_rate_rps = max_rate_rps
        self.rel_tol = rel_tol
        self.max_runs = max_runs
        self.probes: list[SweepPoint] = []
        self.best: SweepPoint | None = None
        self.missed: SweepPoint | None = None
        self.reason = f"max_runs ({max_runs}) reached"
        self._next: float | None = min_rate_rps

    def next_rate(self) -> float | None:
        return self._next if len(self.probes) < self.max_runs else None

    def record(self, point: SweepPoint) -> None:
        """Take one probe's verdict and choose the next rate (or end the search)."""
        self.probes.append(point)
        rate = point.value
        if point.meets_slo:
            if self.best is None or rate > self.best.value:
                self.best = point
            if self.missed is not None and self.missed.value <= rate:
                self.missed = None  # noise: a higher rate passed after a lower one missed
        elif self.missed is None or rate < self.missed.value:
            self.missed = point
        self._next = self._choose()

    def _choose(self) -> float | None:
        passed, missed = self.best, self.missed
        if passed is None:
            self.reason = f"the lowest rate {self.min_rate_rps:g} rps already misses the SLO"
            return None
        if missed is None:
            if passed.value >= self.max_rate_rps:
                self.reason = f"max_rate_rps {self.max_rate_rps:g} meets the SLO"
                return None
            return min(passed.value * 2.0, self.max_rate_rps)
        if missed.value / passed.value - 1.0 <= self.rel_tol:
            self.reason = f"bracketed within {self.rel_tol:.0%}"
            return None
        return math.sqrt(passed.value * missed.value)

    def outcome(
        self, slo: Slo, status: SweepStatus = "completed", error: str = ""
    ) -> GoodputSearch:
        return GoodputSearch(
            slo, status, error or self.reason, _rate(self.best), self.best, tuple(self.probes)
        )


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
    plan = GoodputPlan(
        min_rate_rps=min_rate_rps, max_rate_rps=max_rate_rps, rel_tol=rel_tol, max_runs=max_runs
    )
    opts = replace(options or RunOptions(), slo=slo)
    run = evaluate or _evaluator(target, trace, limits, opts, cancel)
    while (rate := plan.next_rate()) is not None:
        point_spec = spec.at_rate(rate)
        result = await run(point_spec)
        point = SweepPoint(rate, point_spec, result, meets(result, slo))
        if result.status in ("failed", "cancelled"):
            plan.probes.append(point)
            return plan.outcome(slo, result.status, result.error)
        plan.record(point)
    return plan.outcome(slo)


def _rate(point: SweepPoint | None) -> float | None:
    return None if point is None else point.value
