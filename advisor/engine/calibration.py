"""Calibration: fit a profile's efficiencies and overheads to measurements, report the error.

Two sources of measurements:
- `MeasuredPoint`s of one deployment (a benchmark at some concurrency and lengths: output
  tok/s, median TTFT, median TPOT), fitted with `fit_points`;
- published `Case`s across deployments (`advisor.engine.cases`), fitted with `fit_cases`.

Both minimise the sum of squared log errors (so a 10% miss weighs the same at 30 tok/s and
at 30,000 tok/s) over the chosen parameters with a small Levenberg-Marquardt solver in
parameter space mapped to the valid ranges (efficiencies in (0.001, 1], overheads >= 0,
overlap in [0, 1]). Every evaluation simulates the workload, so what is fitted is the whole
serving model, not a formula detached from it. The result carries the fitted profile and the
fit error per point (absolute percentage error), their median and mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from advisor.engine.cases import Case, case_setup, setup_metric_value
from advisor.engine.perf import FITTABLE, CalibrationProfile, ConfigError, Deployment
from advisor.engine.profiles import ProfileSet
from advisor.engine.sim import Replica, SchedulerConfig, simulate
from advisor.engine.workload import closed_loop_workload

FloatArray = npt.NDArray[np.float64]
EFFICIENCY_FLOOR = 1e-3  # a CPU runs tiny matmuls at ~1% of its nominal AMX peak
OVERHEAD_FLOOR_S = 1e-9
POINT_METRICS = ("output_tok_per_s", "median_ttft_s", "median_tpot_s")


@dataclass(frozen=True)
class MeasuredPoint:
    """One benchmark of a deployment: a closed loop of `concurrency` clients, fixed lengths."""

    concurrency: int
    input_tokens: int
    output_tokens: int
    output_tok_per_s: float | None = None
    median_ttft_s: float | None = None
    median_tpot_s: float | None = None
    num_requests: int | None = None

    def __post_init__(self) -> None:
        for name in ("concurrency", "input_tokens", "output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in POINT_METRICS:
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name}: must be a positive number, got {value!r}")
        if all(getattr(self, name) is None for name in POINT_METRICS):
            raise ConfigError("point: needs at least one of " + ", ".join(POINT_METRICS))


@dataclass(frozen=True)
class FitError:
    """How far one fitted prediction is from its measurement."""

    label: str
    measured: float
    predicted: float

    @property
    def ape(self) -> float:
        return abs(self.predicted - self.measured) / self.measured


@dataclass(frozen=True)
class FitResult:
    profile: CalibrationProfile
    errors: tuple[FitError, ...]
    fitted: tuple[str, ...]

    @property
    def median_ape(self) -> float:
        return float(np.median([e.ape for e in self.errors])) if self.errors else math.nan

    @property
    def mean_ape(self) -> float:
        return float(np.mean([e.ape for e in self.errors])) if self.errors else math.nan


# --- parameter mapping ------------------------------------------------------------------------


def _to_free(name: str, value: float) -> float:
    if name in ("bw_efficiency", "compute_efficiency"):
        share = min(max((value - EFFICIENCY_FLOOR) / (1.0 - EFFICIENCY_FLOOR), 1e-6), 1 - 1e-6)
        return math.log(share / (1.0 - share))
    if name == "overlap":
        share = min(max(value, 1e-6), 1 - 1e-6)
        return math.log(share / (1.0 - share))
    return math.log(max(value, OVERHEAD_FLOOR_S))


def _from_free(name: str, free: float) -> float:
    if name in ("bw_efficiency", "compute_efficiency"):
        return EFFICIENCY_FLOOR + (1.0 - EFFICIENCY_FLOOR) / (1.0 + math.exp(-free))
    if name == "overlap":
        return 1.0 / (1.0 + math.exp(-free))
    return math.exp(min(free, 50.0))


def _profile_at(
    start: CalibrationProfile, names: Sequence[str], free: FloatArray
) -> CalibrationProfile:
    values = start.to_dict()
    for name, x in zip(names, free, strict=True):
        values[name] = _from_free(name, float(x))
    return CalibrationProfile.from_dict(values)


def least_squares(
    residuals: Callable[[FloatArray], FloatArray],
    x0: FloatArray,
    *,
    max_iterations: int = 60,
    step: float = 1e-3,
) -> FloatArray:
    """Levenberg-Marquardt with forward-difference Jacobians (few parameters, cheap residuals)."""
    x = np.array(x0, dtype=np.float64)
    r = residuals(x)
    cost = float(r @ r)
    damping = 1e-2
    for _ in range(max_iterations):
        jac = np.empty((r.size, x.size))
        for j in range(x.size):
            probe = x.copy()
            probe[j] += step
            jac[:, j] = (residuals(probe) - r) / step
        gradient = jac.T @ r
        normal = jac.T @ jac
        improved = converged = False
        for _attempt in range(12):
            lhs = normal + damping * np.diag(np.diag(normal) + 1e-9)
            try:
                delta = np.linalg.solve(lhs, -gradient)
            except np.linalg.LinAlgError:
                damping *= 10
                continue
            candidate = x + np.clip(delta, -3.0, 3.0)
            r_new = residuals(candidate)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                x, r, improved = candidate, r_new, True
                converged = cost - cost_new < 1e-10 * max(cost, 1e-30)
                cost = cost_new
                damping = max(damping / 3, 1e-7)
                break
            damping *= 4
        if not improved or converged:
            break
    return x


def _fit(
    start: CalibrationProfile,
    names: Sequence[str],
    predict: Callable[[CalibrationProfile], list[float]],
    measured: list[float],
    starts: Sequence[CalibrationProfile] = (),
) -> CalibrationProfile:
    unknown = [name for name in names if name not in FITTABLE]
    if unknown:
        raise ConfigError(f"fit: cannot fit {unknown}; fittable: {list(FITTABLE)}")
    target = np.log(np.array(measured))

    def residuals(free: FloatArray) -> FloatArray:
        try:
            predicted = predict(_profile_at(start, names, free))
        except ConfigError:
            return np.full(target.size, 1e3)
        values = np.array(predicted)
        bad = ~(np.isfinite(values) & (values > 0))
        values[bad] = 1e-30
        return np.asarray(np.log(values) - target, dtype=np.float64)

    best: FloatArray | None = None
    best_cost = math.inf
    for origin in (start, *starts):
        x0 = np.array([_to_free(name, getattr(origin, name)) for name in names])
        x = least_squares(residuals, x0)
        r = residuals(x)
        if float(r @ r) < best_cost:
            best, best_cost = x, float(r @ r)
    assert best is not None
    return _profile_at(start, names, best)


# --- measured points of one deployment ----------------------------------------------------------


def predict_point(replica: Replica, point: MeasuredPoint) -> dict[str, float]:
    """Simulate a closed-loop benchmark like `vllm bench serve --max-concurrency`."""
    workload = closed_loop_workload(
        num_requests=point.num_requests or max(8 * point.concurrency, 16),
        concurrency=point.concurrency,
        prompt_tokens=point.input_tokens,
        output_tokens=point.output_tokens,
    )
    metrics = simulate(replica, workload).metrics()
    return {
        "output_tok_per_s": metrics.output_throughput_tok_s,
        "median_ttft_s": metrics.ttft_s.p50,
        "median_tpot_s": metrics.tpot_s.p50,
    }


def fit_points(
    *,
    deployment: Deployment,
    scheduler: SchedulerConfig,
    points: Sequence[MeasuredPoint],
    start: CalibrationProfile,
    fit: Sequence[str],
    metrics: Sequence[str] = POINT_METRICS,
    source: str = "fitted on measured points",
) -> FitResult:
    """Fit `fit` parameters of `start` so simulated points match the measured ones."""
    if not points:
        raise ConfigError("points: need at least one measured point")
    wanted = [(i, m) for i, p in enumerate(points) for m in metrics if getattr(p, m) is not None]
    if len(wanted) < len(fit):
        raise ConfigError(
            f"points: {len(wanted)} measured values cannot determine {len(fit)} parameters"
        )

    def predict(profile: CalibrationProfile) -> list[float]:
        replica = Replica(deployment, scheduler, profile)
        sims = [predict_point(replica, point) for point in points]
        return [sims[i][m] for i, m in wanted]

    measured = [float(getattr(points[i], m)) for i, m in wanted]
    profile = _fit(start, fit, predict, measured)
    predicted = predict(profile)
    errors = tuple(
        FitError(f"concurrency {points[i].concurrency} {m}", measured[k], predicted[k])
        for k, (i, m) in enumerate(wanted)
    )
    result = FitResult(profile, errors, tuple(fit))
    return FitResult(
        replace(profile, source=source, fit_median_ape=result.median_ape, fit_points=len(points)),
        errors,
        tuple(fit),
    )


def evaluate_points(
    replica: Replica, points: Sequence[MeasuredPoint], metrics: Sequence[str] = POINT_METRICS
) -> tuple[FitError, ...]:
    """Errors of a replica's predictions against measured points (no fitting)."""
    errors = []
    for point in points:
        predicted = predict_point(replica, point)
        for m in metrics:
            measured = getattr(point, m)
            if measured is not None:
                errors.append(
                    FitError(f"concurrency {point.concurrency} {m}", measured, predicted[m])
                )
    return tuple(errors)


# --- published cases across deployments -------------------------------------------------------


def fit_cases(
    cases: Sequence[Case],
    *,
    start: CalibrationProfile,
    fit: Sequence[str] = FITTABLE,
    starts: Sequence[CalibrationProfile] = (),
    source: str = "fitted on published cases",
) -> FitResult:
    """Fit one profile to every modellable case (unmodellable ones are skipped)."""
    probe = ProfileSet((start,))
    usable = []
    for case in cases:
        try:
            usable.append((case, case_setup(case, probe)))
        except Exception:  # noqa: BLE001 - unmodellable cases are not fitted
            continue
    if not usable:
        raise ConfigError("cases: none can be modelled")

    # the metrics of one published run are separate cases: simulate each run once
    runs: dict[Case, int] = {}
    run_of = [
        runs.setdefault(replace(case, id="", metric="", value=1.0, notes="", line=0), len(runs))
        for case, _ in usable
    ]
    first_setup = {run: setup for (_, setup), run in zip(usable, run_of, strict=True)}

    def predict(profile: CalibrationProfile) -> list[float]:
        simulated = {}
        for run, setup in first_setup.items():
            replica = Replica(
                setup.replica.deployment,
                setup.replica.scheduler,
                profile.for_generation(setup.engine_generation),
            )
            simulated[run] = simulate(replica, setup.workload).metrics()
        return [
            setup_metric_value(simulated[run], case.metric, setup)
            for (case, setup), run in zip(usable, run_of, strict=True)
        ]

    measured = [case.value for case, _ in usable]
    profile = _fit(start, fit, predict, measured, starts)
    predicted = predict(profile)
    errors = tuple(
        FitError(case.id, case.value, value)
        for (case, _), value in zip(usable, predicted, strict=True)
    )
    median = float(np.median([e.ape for e in errors]))
    return FitResult(
        replace(profile, source=source, fit_median_ape=median, fit_points=len(usable)),
        errors,
        tuple(fit),
    )
