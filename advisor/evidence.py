"""How far to trust one deployment's projection, and the data floor below which it is not priced.

Three things say how far the engine's numbers for a deployment can be trusted, and each caps
its confidence (high > medium > low); the lowest cap wins and every reason is kept, the one
that capped it first:

- Assumed minutes: the share of the window's minutes whose request rate was neither counted
  (request records, vLLM counters) nor estimated from its GPUs' measured utilization, so the
  workload derivation assumed the covered minutes' mean rate there
  (`advisor.selectors.assessment_workload`). <= `HIGH_MAX_ASSUMED_SHARE`: no cap;
  <= `MEDIUM_MAX_ASSUMED_SHARE`: medium; more: low.
- The utilization gap: measured minus simulated utilization of today's configuration, in
  percentage points, either sign. <= `HIGH_MAX_GAP_PCT_POINTS`: no cap;
  <= `MEDIUM_MAX_GAP_PCT_POINTS`: medium; more: low; nothing measured to compare: medium.
- The calibration's fit error (median absolute percentage error on measured points):
  <= `HIGH_CONFIDENCE_APE`: no cap; <= `MEDIUM_CONFIDENCE_APE`: medium; more: low; unknown:
  medium.

The data floor (`MIN_MEASURED_SHARE`): a deployment with less than this share of the window's
minutes measured (counted or estimated from GPU utilization) is "not enough data": it is not
given to the engine and not priced; the totals keep it at today's cost (`advisor.held`).
Django-free: the assessment service, the pages and the report all read these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# The data floor: the least share of the window's minutes with a measured rate for a
# deployment to be priced (1 h of trace in a 7-day window is 0.6%).
MIN_MEASURED_SHARE = 0.10
HIGH_MAX_ASSUMED_SHARE = 0.10
MEDIUM_MAX_ASSUMED_SHARE = 0.50
HIGH_MAX_GAP_PCT_POINTS = 10.0
MEDIUM_MAX_GAP_PCT_POINTS = 25.0
HIGH_CONFIDENCE_APE = 0.10
MEDIUM_CONFIDENCE_APE = 0.25

Level = Literal["high", "medium", "low"]
_RANK: dict[Level, int] = {"high": 2, "medium": 1, "low": 0}
NOT_ENOUGH_DATA = "not enough data"


@dataclass(frozen=True)
class Coverage:
    """How a deployment's per-minute request rate over the window was obtained."""

    window_minutes: int
    counted_minutes: int  # request records or vLLM request counters
    estimated_minutes: int  # scaled from its GPUs' measured utilization

    @property
    def measured_minutes(self) -> int:
        return self.counted_minutes + self.estimated_minutes

    @property
    def assumed_minutes(self) -> int:
        return max(self.window_minutes - self.measured_minutes, 0)

    @property
    def assumed_share(self) -> float:
        return self.assumed_minutes / self.window_minutes if self.window_minutes else 1.0

    @property
    def measured_share(self) -> float:
        if not self.window_minutes:
            return 0.0
        return min(self.measured_minutes, self.window_minutes) / self.window_minutes

    @property
    def below_floor(self) -> bool:
        return self.measured_share < MIN_MEASURED_SHARE

    def to_json(self) -> dict[str, Any]:
        return {
            "window_minutes": self.window_minutes,
            "counted_minutes": self.counted_minutes,
            "estimated_minutes": self.estimated_minutes,
            "assumed_minutes": self.assumed_minutes,
        }

    @classmethod
    def from_summary(cls, summary: dict[str, Any] | None) -> Coverage | None:
        """From a workload summary as the assessment stores it (None: not recorded)."""
        summary = summary or {}
        window = summary.get("window_minutes")
        counted = summary.get("covered_minutes")
        estimated = summary.get("estimated_minutes")
        if isinstance(window, int) and isinstance(counted, int) and isinstance(estimated, int):
            return cls(window, counted, estimated)
        return None


def thresholds() -> dict[str, float]:
    """The caps' thresholds, for pages that state them."""
    return {
        "floor": MIN_MEASURED_SHARE,
        "assumed_high": HIGH_MAX_ASSUMED_SHARE,
        "assumed_medium": MEDIUM_MAX_ASSUMED_SHARE,
        "gap_high": HIGH_MAX_GAP_PCT_POINTS,
        "gap_medium": MEDIUM_MAX_GAP_PCT_POINTS,
        "ape_high": HIGH_CONFIDENCE_APE,
        "ape_medium": MEDIUM_CONFIDENCE_APE,
    }


def floor_text() -> str:
    return (
        f"a deployment needs a measured request rate (counted, or estimated from its GPUs' "
        f"utilization) for at least {MIN_MEASURED_SHARE:.0%} of the window's minutes to be "
        'priced; below that it is "not enough data", not priced, and the totals keep it at '
        "today's cost"
    )


def below_floor_text(coverage: Coverage) -> str:
    """Why a deployment below the data floor is not priced (its data gap's message)."""
    return (
        f"not enough data: {coverage.measured_minutes:,} of {coverage.window_minutes:,} minutes "
        f"({coverage.measured_share:.1%}) of the window have a measured request rate, below "
        f"the floor of {MIN_MEASURED_SHARE:.0%}; the other {coverage.assumed_minutes:,} would be "
        "assumed. Not priced: it stays at today's cost"
    )


@dataclass(frozen=True)
class Confidence:
    """A deployment's confidence and why, the reason that capped it first."""

    level: str  # high | medium | low | not enough data
    reasons: tuple[str, ...]

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


def _cap_assumed(coverage: Coverage | None) -> tuple[Level, str]:
    if coverage is None:
        return "medium", "share of assumed minutes not recorded"
    share = coverage.assumed_share
    if coverage.assumed_minutes == 0:
        text = "no minute of the window assumed"
    else:
        text = (
            f"{share:.0%} of the window's minutes assumed ({coverage.assumed_minutes:,} of "
            f"{coverage.window_minutes:,} without request counts or GPU utilization)"
        )
    if share <= HIGH_MAX_ASSUMED_SHARE:
        return "high", text
    return ("medium" if share <= MEDIUM_MAX_ASSUMED_SHARE else "low"), text


def _cap_gap(measured_pct: float | None, simulated_pct: float | None) -> tuple[Level, str]:
    if measured_pct is None or simulated_pct is None:
        return "medium", "no measured utilization to check the simulation against"
    gap = measured_pct - simulated_pct
    text = (
        f"measured utilization {measured_pct:.0f}% vs simulated {simulated_pct:.0f}% "
        f"({gap:+.0f} pts)"
    )
    if abs(gap) <= HIGH_MAX_GAP_PCT_POINTS:
        return "high", text
    return ("medium" if abs(gap) <= MEDIUM_MAX_GAP_PCT_POINTS else "low"), text


def calibration_level(fit_median_ape: float | None) -> str:
    """The calibration's own level ("unknown" when it has no fit error)."""
    if fit_median_ape is None:
        return "unknown"
    if fit_median_ape <= HIGH_CONFIDENCE_APE:
        return "high"
    return "medium" if fit_median_ape <= MEDIUM_CONFIDENCE_APE else "low"


def _cap_calibration(fit_median_ape: float | None) -> tuple[Level, str]:
    level = calibration_level(fit_median_ape)
    if level == "unknown" or fit_median_ape is None:
        return "medium", "calibration fit error unknown"
    capped: Level = "high" if level == "high" else "medium" if level == "medium" else "low"
    return capped, f"calibration fit error {fit_median_ape:.0%}"


def confidence_of(
    *,
    coverage: Coverage | None,
    util_measured_pct: float | None,
    util_simulated_pct: float | None,
    fit_median_ape: float | None,
) -> Confidence:
    """The lowest of the three caps (module docstring), reasons ordered lowest cap first."""
    if coverage is not None and coverage.below_floor:
        return Confidence(NOT_ENOUGH_DATA, (below_floor_text(coverage),))
    caps = [
        _cap_assumed(coverage),
        _cap_gap(util_measured_pct, util_simulated_pct),
        _cap_calibration(fit_median_ape),
    ]
    ordered = sorted(caps, key=lambda cap: _RANK[cap[0]])  # stable: ties keep this order
    return Confidence(ordered[0][0], tuple(text for _, text in ordered))
