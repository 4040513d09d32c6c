"""A deployment's replicas over days of load, from its load curve: latency, cost, energy.

`evaluate_fleet(curve, load, ready, billed, economics, slo)` takes, per load step (1 minute),
how many replicas serve (`ready`) and how many are paid for (`billed`: ready plus those still
starting), and returns a `Projection` over all the period's requests:

- each step's requests are served by the ready replicas at rate load / ready each, and
  behave like the load curve at that rate (linear interpolation between grid rates);
- beyond the curve's top rate the replicas are saturated: a fluid backlog (Lindley's
  recursion, vectorised) grows by arrivals minus what the ready replicas complete at
  saturation, and the step's requests wait for it to drain on top of the saturated TTFT;
- TTFT/TPOT percentiles are those of the mixture of all steps' distributions weighted by
  their requests (what a p95 over the whole period means), SLO attainment likewise;
- cost is billed replicas x GPUs x price; energy is billed GPUs at a power linear in the
  busy fraction between idle and full board power (starting replicas at idle).

`fixed_fleet` finds the fewest replicas that meet the SLOs over the whole load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from advisor.engine.advice import Projection
from advisor.engine.capacity import QUANTILES, LoadCurve, SloTargets
from advisor.engine.scenario import LoadShape

FloatArray = npt.NDArray[np.float64]
WAIT_BINS_PER_DECADE = 8  # backlog waits are grouped on a log scale for the mixture


@dataclass(frozen=True)
class Economics:
    """Prices, power and quality that turn a fleet's replicas into money and joules."""

    usd_per_gpu_hour: float
    idle_w: float
    max_w: float
    hours_per_month: float
    quality_delta_points: float = 0.0
    max_quality_loss_points: float = math.inf


@dataclass(frozen=True, eq=False)
class FleetRun:
    projection: Projection
    ready: FloatArray
    billed: FloatArray
    overloaded_steps: int
    attainment_when_starting: float  # SLO attainment over steps with replicas starting


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    if weights.sum() <= 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return float(values[order][min(index, values.size - 1)])


def _next_ready_wait_s(ready: FloatArray, step_s: float) -> FloatArray:
    """Per step: time until a step with a ready replica (0 where one is ready)."""
    n = ready.size
    index = np.where(ready > 0, np.arange(n), n)
    nxt = np.minimum.accumulate(index[::-1])[::-1]
    return np.where(nxt >= n, math.inf, (nxt - np.arange(n)) * step_s)


def evaluate_fleet(
    curve: LoadCurve,
    load: LoadShape,
    ready: FloatArray,
    billed: FloatArray,
    economics: Economics,
    slo: SloTargets,
    *,
    mean_output_tokens: float,
) -> FleetRun:
    """The projection of `curve`'s configuration with these replicas over `load`."""
    step = load.step_s
    rate = load.rate_rps
    arrivals = rate * step
    gpus_per_replica = curve.config.gpus
    sat = curve.saturation_rps
    # fluid backlog: b[m+1] = max(0, b[m] + a[m] - c[m]) = S[m+1] - min(0, min S[..m+1])
    served_capacity = ready * sat * step
    cumulative = np.concatenate(([0.0], np.cumsum(arrivals - served_capacity)))
    backlog_after = cumulative - np.minimum.accumulate(np.minimum(cumulative, 0.0))
    backlog_before = backlog_after[:-1]
    per_replica = np.divide(rate, ready, out=np.full_like(rate, math.inf), where=ready > 0)
    top = curve.top_rps
    overloaded = (per_replica > top) | (backlog_before > 1e-9)
    wait = np.zeros_like(rate)
    if overloaded.any():
        drain = np.divide(backlog_before, ready * sat, out=np.zeros_like(rate), where=ready > 0)
        wait = np.where(ready > 0, drain, _next_ready_wait_s(ready, step) + 0.0)
        wait = np.where(overloaded, wait, 0.0)

    points = curve.rates_rps.size
    position = np.interp(np.where(overloaded, top, per_replica), curve.rates_rps, np.arange(points))
    low = np.minimum(np.floor(position).astype(np.int64), points - 1)
    frac = position - low
    high = np.minimum(low + 1, points - 1)
    normal = ~overloaded
    w_grid = np.bincount(
        low[normal], weights=arrivals[normal] * (1.0 - frac[normal]), minlength=points
    ) + np.bincount(high[normal], weights=arrivals[normal] * frac[normal], minlength=points)

    ttft_values = [curve.ttft_q_s[p] for p in range(points)]
    ttft_weights = [np.full(QUANTILES.size, w_grid[p] / QUANTILES.size) for p in range(points)]
    tpot_values = [curve.tpot_q_s[p] for p in range(points)]
    tpot_weights = list(ttft_weights)
    attained = float((w_grid * curve.attainment).sum())
    starting = billed - ready > 1e-9
    attained_starting = 0.0
    if starting.any():
        att_step = np.interp(
            np.where(overloaded, top, per_replica), curve.rates_rps, curve.attainment
        )
        attained_starting = float((arrivals * att_step)[starting & normal].sum())

    if overloaded.any():
        waits = wait[overloaded]
        weights = arrivals[overloaded]
        finite = np.isfinite(waits)
        groups = np.where(
            finite,
            np.round(np.log10(np.maximum(waits, 1e-3)) * WAIT_BINS_PER_DECADE),
            1e9,
        )
        top_ttft = curve.ttft_q_s[-1]
        top_tpot = curve.tpot_q_s[-1]
        tpot_ok = float(np.mean(top_tpot[:-1] <= slo.tpot_p95_s))
        for group in np.unique(groups):
            members = groups == group
            weight = float(weights[members].sum())
            shift = (
                float(np.average(waits[members], weights=weights[members] + 1e-300))
                if group < 1e9
                else math.inf
            )
            ttft_values.append(top_ttft + shift)
            ttft_weights.append(np.full(QUANTILES.size, weight / QUANTILES.size))
            tpot_values.append(top_tpot)
            tpot_weights.append(np.full(QUANTILES.size, weight / QUANTILES.size))
            share = float(np.mean(top_ttft[:-1] + shift <= slo.ttft_p95_s)) * tpot_ok
            attained += weight * share
            if starting.any():
                in_group = np.zeros_like(overloaded)
                in_group[np.flatnonzero(overloaded)[members]] = True
                attained_starting += float(arrivals[in_group & starting].sum()) * share

    ttft_all = np.concatenate(ttft_values)
    ttft_w = np.concatenate(ttft_weights)
    tpot_all = np.concatenate(tpot_values)
    tpot_w = np.concatenate(tpot_weights)
    total = float(arrivals.sum())
    hours = rate.size * step / 3600.0
    gpus = billed * gpus_per_replica
    usd_per_hour = float(gpus.mean()) * economics.usd_per_gpu_hour
    busy_ready = np.where(
        overloaded,
        1.0,
        np.interp(np.minimum(per_replica, top), *curve.grid0(curve.busy_fraction)),
    )
    busy_ready = np.where(ready > 0, busy_ready, 0.0)
    power_w = gpus_per_replica * (
        billed * economics.idle_w + ready * busy_ready * (economics.max_w - economics.idle_w)
    )
    tokens = total * mean_output_tokens
    tokens_per_s = tokens / (hours * 3600.0) if hours > 0 else 0.0
    energy_j = float(power_w.sum()) * step
    billed_sum = float(billed.sum())
    ttft50 = _weighted_quantile(ttft_all, ttft_w, 0.5)
    ttft95 = _weighted_quantile(ttft_all, ttft_w, 0.95)
    tpot50 = _weighted_quantile(tpot_all, tpot_w, 0.5)
    tpot95 = _weighted_quantile(tpot_all, tpot_w, 0.95)
    quality_ok = -economics.quality_delta_points <= economics.max_quality_loss_points + 1e-12
    latency_ok = total == 0 or (ttft95 <= slo.ttft_p95_s and tpot95 <= slo.tpot_p95_s)
    meets = quality_ok and latency_ok
    projection = Projection(
        gpus=float(gpus.mean()),
        gpus_peak=float(gpus.max()),
        utilization=total / (billed_sum * sat * step) if billed_sum > 0 and sat > 0 else 0.0,
        busy_fraction=float((ready * busy_ready).sum()) / billed_sum if billed_sum > 0 else 0.0,
        ttft_p50_s=ttft50,
        ttft_p95_s=ttft95,
        tpot_p50_s=tpot50,
        tpot_p95_s=tpot95,
        slo_attainment=attained / total if total > 0 else 1.0,
        usd_per_hour=usd_per_hour,
        usd_per_month=usd_per_hour * economics.hours_per_month,
        usd_per_1m_output_tokens=(
            usd_per_hour / (tokens_per_s * 3600.0) * 1e6 if tokens_per_s > 0 else math.inf
        ),
        energy_j_per_output_token=energy_j / tokens if tokens > 0 else math.inf,
        requests_per_s=total / (hours * 3600.0) if hours > 0 else 0.0,
        output_tokens_per_s=tokens_per_s,
        quality_delta_points=economics.quality_delta_points,
        meets_slo=bool(meets),
        # mean board power (W) x hours per month, in kWh
        energy_kwh_per_month=(
            energy_j / (hours * 3600.0) * economics.hours_per_month / 1000.0 if hours > 0 else 0.0
        ),
    )
    starting_requests = float(arrivals[starting].sum()) if starting.any() else 0.0
    return FleetRun(
        projection,
        ready,
        billed,
        int(overloaded.sum()),
        attained_starting / starting_requests if starting_requests > 0 else 1.0,
    )


def fixed_fleet(
    curve: LoadCurve,
    load: LoadShape,
    economics: Economics,
    slo: SloTargets,
    *,
    mean_output_tokens: float,
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> tuple[int, FleetRun]:
    """The fewest replicas (always on) meeting the SLOs; if none does, the closest try.

    The closest try when the SLOs cannot be met at any count is the count at which every
    replica runs at a quarter of its saturation rate at peak: more replicas no longer help.
    """
    steps = load.rate_rps.size

    def run(n: int) -> FleetRun:
        replicas = np.full(steps, float(n))
        return evaluate_fleet(
            curve, load, replicas, replicas, economics, slo, mean_output_tokens=mean_output_tokens
        )

    floor = max(min_replicas, 1)
    sat = max(curve.saturation_rps, 1e-12)
    lowest = max(floor, math.ceil(load.mean_rps / sat - 1e-9))
    if curve.slo_rps > 0:
        highest = max(lowest, math.ceil(load.peak_rps / curve.slo_rps - 1e-9), floor)
    else:
        highest = max(lowest, math.ceil(load.peak_rps / (0.25 * sat) - 1e-9))
    if max_replicas is not None:
        highest = max(min(highest, max_replicas), floor)
        lowest = min(lowest, highest)
    best = run(highest)
    if not best.projection.meets_slo:
        return highest, best
    if highest > lowest:  # usually the peak-based count is the answer: check one fewer first
        fewer = run(highest - 1)
        if not fewer.projection.meets_slo:
            return highest, best
        best, highest = fewer, highest - 1
    low, high = lowest, highest  # invariant: high meets
    while low < high:
        mid = (low + high) // 2
        trial = run(mid)
        if trial.projection.meets_slo:
            high, best = mid, trial
        else:
            low = mid + 1
    if best.projection.gpus != high * curve.config.gpus:
        best = run(high)
    return high, best
