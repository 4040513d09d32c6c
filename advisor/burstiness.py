"""Burstiness of request arrivals: the one definition pages and assessments use.

Burstiness is the gamma shape of the inter-arrival gaps, 1 / CV^2, as `vllm bench serve
--burstiness` and the engine's `gamma_arrivals_s` take it: 1.0 is a Poisson process, below 1
burstier, above 1 smoother (paced, benchmark-like). Each gap is first scaled by the request
rate of its minute, so a daily cycle (busy afternoons, quiet nights) does not count as
burstiness; gaps longer than `MAX_GAP_S` are pauses in traffic or capture, left out. The
inter-arrival CV (std / mean of the raw gaps) is a different number with its own name.

Django-free: the traces page and the assessment's workload derivation both call it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MIN_GAPS = 100  # fewer gaps than this give no estimate
MAX_GAP_S = 600.0
# Bounds of the estimate: evenly spaced arrivals are as smooth as the engine allows.
SHAPE_MIN, SHAPE_MAX = 0.05, 20.0

FloatArray = npt.NDArray[np.float64]


def requests_per_minute(arrival_s: FloatArray, start_s: float) -> FloatArray:
    """How many of `arrival_s` (Unix s, sorted) fall in each minute from `start_s` on."""
    if arrival_s.size == 0:
        return np.zeros(0)
    minute = ((arrival_s - start_s) // 60).astype(np.int64).clip(min=0)
    return np.bincount(minute).astype(np.float64)


def burstiness_gamma_shape(
    arrival_s: FloatArray, per_minute: FloatArray, start_s: float
) -> float | None:
    """The gamma shape of `arrival_s`' gaps scaled by their minute's request count.

    `per_minute` holds the requests counted in each minute from `start_s` on (all of the
    window's, not only these arrivals). None when fewer than `MIN_GAPS` gaps can be used.
    """
    if arrival_s.size <= MIN_GAPS or per_minute.size == 0:
        return None
    gaps = np.diff(arrival_s)
    minute = np.clip(((arrival_s[1:] - start_s) // 60).astype(np.int64), 0, per_minute.size - 1)
    scaled = gaps * per_minute[minute] / 60.0
    scaled = scaled[(gaps <= MAX_GAP_S) & (per_minute[minute] > 0)]
    if scaled.size < MIN_GAPS or scaled.mean() <= 0:
        return None
    variance = float(scaled.var())
    if variance <= 0:
        return SHAPE_MAX
    return float(np.clip(scaled.mean() ** 2 / variance, SHAPE_MIN, SHAPE_MAX))


def inter_arrival_cv(arrival_s: FloatArray) -> float | None:
    """std / mean of the raw gaps (1 for Poisson, above 1 bursty); None under 2 gaps."""
    gaps = np.diff(arrival_s)
    if gaps.size < 2 or gaps.mean() <= 0:
        return None
    return float(gaps.std() / gaps.mean())
