"""The redundancy rule: the plan keeps a deployment's minimum replicas (issue 16 item 5)."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.engine.advice import DeploymentPlan
from advisor.engine.planner import assess
from advisor.engine.redundancy import replica_floor
from advisor.engine.scenario import DeploymentSpec, ScenarioError, SloSpec
from tests.engine.strategies.helpers import deployment, scenario

STRATEGIES = ("batching", "autoscaling")


def _big(slo: SloSpec) -> DeploymentSpec:
    """A 70B model on 2 H100s per replica, 3 replicas today, at a load one replica serves."""
    return deployment(
        "big", model="Llama-3-70B", tensor_parallel=2, replicas=3, rate_rps=0.2, slo=slo
    )


def _plan(slo: SloSpec) -> tuple[DeploymentPlan, dict[str, Any]]:
    item = assess(scenario(_big(slo), strategies=STRATEGIES)).deployment("big")
    assert item.status == "ok", item.message
    return item, dict(item.constraints)


def test_it_keeps_two_replicas_of_a_three_replica_deployment_by_default() -> None:
    item, rules = _plan(SloSpec())
    assert item.config["replicas"] == 2
    assert rules["min_replicas"] == 2
    assert rules["min_replicas_defaulted"] is True
    assert rules["binding"] is True
    assert rules["replicas_for_load"] == 1
    assert rules["min_replicas_text"] == (
        "at least 2 replicas (default: today runs 3, so one can fail or restart while "
        "another serves)"
    )
    assert item.message.endswith(
        "; redundancy rule: at least 2 replicas (default: today runs 3, so one can fail or "
        "restart while another serves); the load alone needs 1"
    )


def test_it_keeps_the_minimum_set_with_the_slos() -> None:
    item, rules = _plan(SloSpec(min_replicas=3))
    assert item.config["replicas"] == 3
    assert (rules["min_replicas"], rules["min_replicas_defaulted"]) == (3, False)
    assert (rules["binding"], rules["replicas_for_load"]) == (True, 1)


def test_a_minimum_of_zero_lets_the_plan_cut_to_what_the_load_needs() -> None:
    item, rules = _plan(SloSpec(min_replicas=0))
    assert item.config["replicas"] == 1
    assert (rules["min_replicas"], rules["binding"]) == (0, False)


def test_the_rule_defaults_to_no_minimum_for_a_single_replica() -> None:
    rule = replica_floor(deployment("one", replicas=1))
    assert (rule.replicas, rule.defaulted) == (0, True)
    assert rule.text == "no minimum replica count (default: today runs 1 replica)"


@pytest.mark.parametrize("value", [-1, 513, 1.5, True])
def test_it_refuses_a_minimum_out_of_bounds_naming_the_field(value: object) -> None:
    with pytest.raises(ScenarioError) as caught:
        SloSpec(min_replicas=value)  # type: ignore[arg-type]
    assert caught.value.field == "min_replicas"


def test_it_round_trips_the_rule_through_the_snapshot() -> None:
    fleet = scenario(_big(SloSpec(min_replicas=3)))
    again = type(fleet).from_json(fleet.to_json())
    assert again.deployment("big").slo.min_replicas == 3
    assert again.digest() == fleet.digest()
