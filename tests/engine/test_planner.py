"""The planner: combined strategies, the cheapest plan meeting the SLOs, clear answers."""

from __future__ import annotations

import json

import pytest

from advisor.engine.advice import Plan
from advisor.engine.planner import assess
from advisor.engine.scenario import PriceEntry, Scenario, SloSpec
from tests.engine.strategies.helpers import deployment, diurnal, scenario


@pytest.fixture(scope="module")
def fleet() -> Scenario:
    return scenario(
        deployment("chat", rate_rps=60, load=diurnal(60, 4.0), replicas=4, slo=SloSpec(1.0, 0.05)),
        deployment("small-a", rate_rps=0.2, seed=1),
        deployment("small-b", model="Qwen2.5-7B", rate_rps=0.1, seed=2),
        deployment("ghost", model="llama-9b", rate_rps=0.1, seed=3),
    )


@pytest.fixture(scope="module")
def plan(fleet: Scenario) -> Plan:
    return assess(fleet)


def test_it_answers_an_unknown_model_and_plans_the_rest(plan: Plan) -> None:
    ghost = plan.deployment("ghost")
    assert ghost.status == "error"
    assert ghost.message.startswith("deployments[3].model: unknown 'llama-9b'")
    assert any(m.startswith("ghost: ") for m in plan.messages)
    assert {p.deployment for p in plan.deployments if p.status == "ok"} == {
        "chat",
        "small-a",
        "small-b",
    }
    assert {r.deployment for r in plan.strategy_results} == {"chat", "small-a", "small-b"}


def test_it_returns_a_cheaper_plan_that_meets_every_slo(plan: Plan) -> None:
    assert plan.fleet_plan.meets_slo
    assert plan.fleet_plan.usd_per_month < plan.fleet_baseline.usd_per_month
    assert plan.savings_usd_per_month == pytest.approx(
        plan.fleet_baseline.usd_per_month - plan.fleet_plan.usd_per_month
    )
    for item in plan.deployments:
        if item.status == "ok":
            assert item.plan is not None
            assert item.plan.meets_slo
            assert item.pareto  # the non-dominated alternatives come with it
    # the two light models share one GPU in the plan
    assert "sharing" in plan.deployment("small-a").strategies
    assert plan.sharing["groups"][0]["gpus_saved"] == 1.0


def test_it_builds_the_combination_table_for_this_fleet(plan: Plan) -> None:
    rows = plan.combinations
    assert len(rows) == 2**5
    assert rows[0].strategies == ()
    full = next(r for r in rows if len(r.strategies) == 5)
    assert full.usd_per_month == pytest.approx(plan.fleet_plan.usd_per_month)
    # adding a strategy never makes the best plan dearer (the smaller set stays available;
    # the planner settles costs within 1% by changing less, hence the tolerance)
    by_set = {frozenset(r.strategies): r for r in rows if r.meets_slo}
    for strategies, row in by_set.items():
        for other, bigger in by_set.items():
            if strategies < other and "sharing" not in other - strategies:
                assert bigger.usd_per_month <= row.usd_per_month * 1.01 + 0.01


def test_it_reports_sensitivity_largest_swing_first(plan: Plan) -> None:
    swings = [row.swing_usd_per_month for row in plan.sensitivity]
    assert swings == sorted(swings, reverse=True)
    load = next(r for r in plan.sensitivity if r.input == "load (requests/s)")
    assert load.plan_usd_per_month_low <= load.plan_usd_per_month_high
    price = next(r for r in plan.sensitivity if r.input == "GPU price")
    assert price.plan_usd_per_month_high / price.plan_usd_per_month_low == pytest.approx(1.5)


def test_it_gives_the_same_numbers_from_a_stored_snapshot(fleet: Scenario, plan: Plan) -> None:
    again = assess(Scenario.from_json(fleet.to_json()))
    assert again.to_json() == plan.to_json()
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()
    json.loads(plan.to_json())  # strict JSON


def test_it_says_no_configuration_meets_an_impossible_slo() -> None:
    tight = scenario(
        # 2,000-6,000-token prompts: prefill alone takes longer than 50 ms on any configuration
        deployment("tight", model="Llama-3-70B", tensor_parallel=4, rate_rps=0.5, prompt=4000,
                   output=100, slo=SloSpec(0.05, 0.05)),
        strategies=("batching", "quantization"),
    )  # fmt: skip
    plan = assess(tight)
    item = plan.deployment("tight")
    assert item.status == "no_feasible_configuration"
    assert item.message.startswith("no configuration meets TTFT p95 <= 50 ms; closest: ")
    assert item.closest is not None
    assert item.closest.projection is not None
    assert item.closest.projection.ttft_p95_s > 0.05
    assert plan.messages == (f"tight: {item.message}",)


def test_it_scales_savings_with_the_price_it_is_given() -> None:
    def run(price: float) -> Plan:
        base = scenario(
            deployment("chat", rate_rps=60, load=diurnal(60, 4.0), replicas=4),
            strategies=("batching", "autoscaling"),
        )
        sheet = {"H100-SXM": PriceEntry(price, "test sheet")}
        return assess(Scenario(base.deployments, prices=sheet, options=base.options))

    cheap, dear = run(2.0), run(4.0)
    assert dear.savings_usd_per_month == pytest.approx(2 * cheap.savings_usd_per_month)
    assert dear.savings_fraction == pytest.approx(cheap.savings_fraction)
