"""Held deployments in a stored plan's totals (pure: no database)."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.held import held_entry, plan_hold


def _plan() -> dict[str, Any]:
    return {
        "fleet_baseline": {"gpus": 4.0, "gpus_peak": 4.0, "usd_per_hour": 16.0,
                           "usd_per_month": 11680.0, "ttft_p95_s": 0.4},
        "fleet_plan": {"gpus": 2.0, "gpus_peak": 3.0, "usd_per_hour": 8.0,
                       "usd_per_month": 5840.0, "ttft_p95_s": 0.9},
        "savings_usd_per_month": 5840.0, "savings_fraction": 0.5,
        "combinations": [{"strategies": [], "gpus": 3.0, "usd_per_month": 8760.0,
                          "savings_usd_per_month": 2920.0, "savings_fraction": 0.25}],
        "sensitivity": [
            {"input": "GPU price", "low_label": "x0.8", "high_label": "x1.2",
             "plan_usd_per_month_low": 4672.0, "plan_usd_per_month_high": 7008.0,
             "savings_fraction_low": 0.5, "savings_fraction_high": 0.5,
             "swing_usd_per_month": 2336.0},
            {"input": "load (requests/s)", "low_label": "x0.8", "high_label": "x1.25",
             "plan_usd_per_month_low": 2920.0, "plan_usd_per_month_high": "Infinity",
             "savings_fraction_low": 0.75, "savings_fraction_high": "-Infinity",
             "swing_usd_per_month": "Infinity"},
        ],
    }  # fmt: skip


def _held() -> dict[str, Any]:
    return held_entry(
        deployment="big", status="infeasible", reason="does not fit", hardware="H100-SXM",
        gpus=2.0, usd_per_gpu_hour=4.0, hours_per_month=730.0,
    )  # fmt: skip


def test_it_adds_a_held_deployment_to_both_sides_at_todays_cost() -> None:
    held = _held()
    assert (held["usd_per_hour"], held["usd_per_month"]) == (8.0, 5840.0)
    plan = plan_hold(_plan(), [held])
    assert plan["held"] == [held]
    assert plan["fleet_baseline"]["usd_per_month"] == 11680.0 + 5840.0
    assert plan["fleet_plan"]["usd_per_month"] == 5840.0 + 5840.0
    assert (plan["fleet_baseline"]["gpus"], plan["fleet_plan"]["gpus_peak"]) == (6.0, 5.0)
    assert plan["fleet_plan"]["usd_per_hour"] == 16.0
    assert plan["fleet_plan"]["ttft_p95_s"] == 0.9  # the simulated deployments' figure
    assert plan["savings_usd_per_month"] == 5840.0
    assert plan["savings_fraction"] == 5840.0 / 17520.0
    [row] = plan["combinations"]
    assert (row["usd_per_month"], row["gpus"]) == (8760.0 + 5840.0, 5.0)
    assert row["savings_fraction"] == 2920.0 / 17520.0
    price, load = plan["sensitivity"]
    # at 0.8x and 1.2x the GPU price the held deployment costs 0.8x and 1.2x too
    assert price["plan_usd_per_month_low"] == pytest.approx(4672.0 + 4672.0)
    assert price["savings_fraction_low"] == pytest.approx(1 - 9344.0 / (9344.0 + 4672.0))
    assert price["plan_usd_per_month_high"] == pytest.approx(7008.0 + 7008.0)
    assert price["swing_usd_per_month"] == pytest.approx(14016.0 - 9344.0)
    assert load["plan_usd_per_month_low"] == 2920.0 + 5840.0
    assert load["savings_fraction_low"] == 1 - 8760.0 / 17520.0
    assert load["plan_usd_per_month_high"] == "Infinity"  # cannot be served: stays so


def test_it_leaves_the_engines_plan_alone_and_refuses_to_hold_twice() -> None:
    engine = _plan()
    held = plan_hold(engine, [_held()])
    assert engine == _plan()
    with pytest.raises(ValueError, match="already holds"):
        plan_hold(held, [_held()])
    assert plan_hold(engine, [])["held"] == []


def test_it_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="status: expected one of"):
        held_entry(deployment="x", status="maybe", reason="", hardware="L4", gpus=1.0,
                   usd_per_gpu_hour=1.0, hours_per_month=730.0)  # fmt: skip
