"""Confidence per deployment and the data floor (pure: no database)."""

from __future__ import annotations

import pytest

from advisor.evidence import MIN_MEASURED_SHARE, Confidence, Coverage, confidence_of

WEEK = 7 * 1440


def test_it_reports_one_hour_in_a_week_as_not_enough_data() -> None:
    # Issue 16, item 3: 1 h of trace, 0% measured vs 100% simulated, was "medium".
    coverage = Coverage(WEEK, counted_minutes=60, estimated_minutes=0)
    assert (coverage.assumed_minutes, round(coverage.assumed_share, 4)) == (10020, 0.994)
    assert coverage.below_floor
    judged = confidence_of(
        coverage=coverage, util_measured_pct=0.0, util_simulated_pct=100.0, fit_median_ape=0.12
    )
    assert judged == Confidence(
        "not enough data",
        ("not enough data: 60 of 10,080 minutes (0.6%) of the window have a measured request "
         "rate, below the floor of 10%; the other 10,020 would be assumed. Not priced: it stays "
         "at today's cost",),
    )  # fmt: skip


def test_it_falls_with_the_share_of_assumed_minutes() -> None:
    def level(assumed: int) -> str:
        coverage = Coverage(1000, counted_minutes=1000 - assumed, estimated_minutes=0)
        return confidence_of(
            coverage=coverage, util_measured_pct=50.0, util_simulated_pct=48.0,
            fit_median_ape=0.05,
        ).level  # fmt: skip

    assert [level(n) for n in (0, 100, 101, 500, 501, 900)] == [
        "high", "high", "medium", "medium", "low", "low",
    ]  # fmt: skip
    assert level(901) == "not enough data"  # measured 9.9% < the floor
    assert MIN_MEASURED_SHARE == 0.10


def test_it_counts_minutes_estimated_from_gpu_utilization_as_measured() -> None:
    coverage = Coverage(WEEK, counted_minutes=60, estimated_minutes=WEEK - 60)
    assert (coverage.assumed_minutes, coverage.below_floor) == (0, False)


def test_it_falls_with_the_utilization_gap_and_says_why_first() -> None:
    full = Coverage(WEEK, counted_minutes=WEEK, estimated_minutes=0)
    judged = confidence_of(
        coverage=full, util_measured_pct=0.0, util_simulated_pct=100.0, fit_median_ape=0.12
    )
    assert judged.level == "low"
    assert judged.reasons == (
        "measured utilization 0% vs simulated 100% (-100 pts)",
        "calibration fit error 12%",
        "no minute of the window assumed",
    )
    gaps = [(50.0, 40.0), (50.0, 39.0), (50.0, 25.0), (50.0, 24.0), (10.0, 80.0)]
    levels = [
        confidence_of(coverage=full, util_measured_pct=m, util_simulated_pct=s,
                      fit_median_ape=0.05).level
        for m, s in gaps
    ]  # fmt: skip
    assert levels == ["high", "medium", "medium", "low", "low"]


@pytest.mark.parametrize(
    ("coverage", "measured", "ape", "level", "first"),
    [
        (None, 50.0, 0.05, "medium", "share of assumed minutes not recorded"),
        (Coverage(100, 100, 0), None, 0.05, "medium",
         "no measured utilization to check the simulation against"),
        (Coverage(100, 100, 0), 50.0, None, "medium", "calibration fit error unknown"),
        (Coverage(100, 100, 0), 50.0, 0.30, "low", "calibration fit error 30%"),
        (Coverage(100, 40, 30), 50.0, 0.05, "medium",
         "30% of the window's minutes assumed (30 of 100 without request counts or GPU "
         "utilization)"),
    ],
)  # fmt: skip
def test_what_is_unknown_caps_at_medium_and_each_cap_names_itself(
    coverage: Coverage | None, measured: float | None, ape: float | None, level: str, first: str
) -> None:
    judged = confidence_of(
        coverage=coverage, util_measured_pct=measured, util_simulated_pct=50.0,
        fit_median_ape=ape,
    )  # fmt: skip
    assert (judged.level, judged.reasons[0]) == (level, first)


def test_it_reads_the_coverage_an_assessment_stored() -> None:
    stored = {"window_minutes": 100, "covered_minutes": 40, "estimated_minutes": 30,
              "assumed_minutes": 30}  # fmt: skip
    assert Coverage.from_summary(stored) == Coverage(100, 40, 30)
    assert Coverage.from_summary({"covered_minutes": 40}) is None  # stored before it was kept
    assert Coverage.from_summary(None) is None
