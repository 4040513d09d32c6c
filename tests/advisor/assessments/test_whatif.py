"""What-ifs on a stored scenario: changes applied field by field, errors naming the field, the
engine's answer under the changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from advisor.engine.scenario import GpuKindChoice, PriceEntry, Scenario
from advisor.services.whatif import WhatIfInputError, whatif_scenario, whatif_simulate
from probes.models import Cluster
from tests.dashboard.assessed import (
    PRICE_USD,
    _scenario,
    assessment_completed,
    assessment_with_big,
)

START = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return _scenario(START)


def test_it_applies_each_change_and_says_what_changed(scenario: Scenario) -> None:
    changed = whatif_scenario(
        scenario=scenario,
        changes={
            "deployments": {
                "llama": {"hardware": "a100", "tensor_parallel": 2, "replicas": 1,
                          "slo": {"ttft_p95_s": 0.5}},
            },
            "prices": {"A100-80GB": 1.5, "H100-SXM": PRICE_USD},
            "strategies": ["batching", "autoscaling"],
        },
    )  # fmt: skip
    llama = changed.scenario.deployment("llama")
    assert (llama.hardware, llama.tensor_parallel, llama.replicas) == ("A100-80GB", 2, 1)
    assert llama.slo.ttft_p95_s == 0.5
    # the changed SLO is no longer a default; the others still are
    assert llama.slo.defaulted == ("tpot_p95_s", "max_quality_loss_points")
    assert changed.scenario.deployment("qwen") == scenario.deployment("qwen")
    assert changed.scenario.prices["A100-80GB"].usd_per_gpu_hour == 1.5
    assert changed.scenario.prices["H100-SXM"] == scenario.prices["H100-SXM"]  # same price
    assert changed.scenario.options.strategy_names == ("batching", "autoscaling")
    assert changed.described == (
        "llama: GPU H100-SXM -> A100-80GB",
        "llama: GPUs per replica 1 -> 2",
        "llama: replicas today 3 -> 1",
        "llama: SLO ttft_p95_s 2 -> 0.5",
        "price of A100-80GB $2.74 -> $1.5 per GPU-hour",
        "strategies: without quantization, speculative, sharing",
    )
    assert changed.scenario.digest() != scenario.digest()


def test_it_turns_prefix_caching_off_and_on(scenario: Scenario) -> None:
    off = whatif_scenario(
        scenario=scenario, changes={"deployments": {"llama": {"enable_prefix_caching": False}}}
    )
    assert off.scenario.deployment("llama").engine_args.enable_prefix_caching is False
    assert off.described == ("llama: prefix caching on -> off",)
    assert off.scenario.digest() != scenario.digest()
    again = whatif_scenario(
        scenario=off.scenario, changes={"deployments": {"llama": {"enable_prefix_caching": True}}}
    )
    assert again.described == ("llama: prefix caching off -> on",)
    assert again.scenario.deployments == scenario.deployments
    same = whatif_scenario(
        scenario=scenario, changes={"deployments": {"llama": {"enable_prefix_caching": True}}}
    )
    assert same.described == ()


def test_it_pins_and_excludes_gpu_kinds_and_switches_the_lever(scenario: Scenario) -> None:
    changed = whatif_scenario(
        scenario=scenario,
        changes={
            "deployments": {
                "llama": {"gpu_kinds": {"pin": ["l40s", "L4"]}},
                "qwen": {"gpu_kinds": {"exclude": ["H100-SXM"], "pin": []}},
            },
            "hardware_moves": False,
        },
    )
    assert changed.scenario.deployment("llama").gpu_kinds == GpuKindChoice(pin=("L40S", "L4"))
    assert changed.scenario.deployment("qwen").gpu_kinds == GpuKindChoice(exclude=("H100-SXM",))
    assert changed.scenario.options.hardware_moves is False
    assert changed.described == (
        "llama: GPU kinds pinned to L40S, L4",
        "qwen: GPU kinds excluded H100-SXM",
        "moves to other GPU kinds off",
    )
    # the stored lists and the lever as they are: no change
    again = whatif_scenario(
        scenario=changed.scenario,
        changes={
            "deployments": {"llama": {"gpu_kinds": {"pin": ["L40S", "L4"], "exclude": []}}},
            "hardware_moves": False,
        },
    )
    assert again.described == ()
    cleared = whatif_scenario(
        scenario=changed.scenario,
        changes={"deployments": {"llama": {"gpu_kinds": {"pin": []}}}, "hardware_moves": True},
    )
    assert cleared.scenario.deployment("llama").gpu_kinds == GpuKindChoice()
    assert cleared.described == ("llama: GPU kinds pinned to none", "moves to other GPU kinds on")


def test_it_compares_prefix_aware_routing_and_adds_kv_offload(scenario: Scenario) -> None:
    changed = whatif_scenario(
        scenario=scenario,
        changes={"deployments": {"llama": {"routing": "prefix_aware", "kv_offload_gib": 64}}},
    )
    llama = changed.scenario.deployment("llama")
    assert llama.routing == "prefix_aware"
    assert llama.engine_args.kv_offload_gib == 64.0
    assert changed.described == (
        "llama: routing round_robin -> prefix_aware",
        "llama: KV offload to host memory 0 -> 64 GiB",
    )
    same = whatif_scenario(
        scenario=scenario,
        changes={"deployments": {"llama": {"routing": "round_robin", "kv_offload_gib": 0}}},
    )
    assert same.described == ()


def test_the_same_values_are_no_change(scenario: Scenario) -> None:
    same = whatif_scenario(
        scenario=scenario,
        changes={
            "deployments": {"llama": {"hardware": "H100-SXM", "replicas": 3,
                                      "slo": {"tpot_p95_s": 0.1}}},
            "prices": {"H100-SXM": PRICE_USD},
            "strategies": list(scenario.options.strategy_names),
        },
    )  # fmt: skip
    assert same.described == ()
    assert same.scenario.deployments == scenario.deployments


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"deployments": {"llama": {"hardware": "TPU-v9"}}}, "deployments.llama.hardware",
         "unknown 'TPU-v9'"),
        ({"deployments": {"llama": {"replicas": 0}}}, "deployments.llama.replicas",
         "expected a whole number in [1, 512], got 0"),
        ({"deployments": {"llama": {"tensor_parallel": 1.5}}},
         "deployments.llama.tensor_parallel", "expected a whole number"),
        ({"deployments": {"llama": {"slo": {"ttft_p95_s": -1}}}},
         "deployments.llama.slo.ttft_p95_s", "expected a number > 0"),
        ({"deployments": {"llama": {"slo": {"latency": 1}}}}, "deployments.llama.slo.latency",
         "unknown field"),
        ({"deployments": {"mistral": {"replicas": 2}}}, "deployments.mistral",
         "not in this assessment (it has llama, qwen)"),
        ({"prices": {"H100-SXM": "cheap"}}, "prices.H100-SXM", "expected a number >= 0"),
        ({"prices": {"Z80": 1.0}}, "prices.Z80", "unknown 'Z80'"),
        ({"strategies": ["batching", "magic"]}, "strategies[1]", "unknown 'magic'"),
        ({"strategies": "batching"}, "strategies", "expected a list"),
        ({"gpus": 3}, "gpus", "unknown field"),
        ({"deployments": {"llama": {"enable_prefix_caching": "off"}}},
         "deployments.llama.enable_prefix_caching", "expected true or false, got 'off'"),
        ({"deployments": {"llama": {"gpu_kinds": {"pin": "L4"}}}},
         "deployments.llama.gpu_kinds.pin", "expected a list of GPU kinds, got 'L4'"),
        ({"deployments": {"llama": {"gpu_kinds": {"exclude": ["L4", "Z80"]}}}},
         "deployments.llama.gpu_kinds.exclude[1]", "unknown 'Z80'"),
        ({"deployments": {"llama": {"gpu_kinds": {"pin": ["L4"], "exclude": ["l4"]}}}},
         "deployments.llama.gpu_kinds.exclude[0]",
         "'L4' is also pinned: pin or exclude it, not both"),
        ({"deployments": {"llama": {"gpu_kinds": {"pin": ["L4", "L4"]}}}},
         "deployments.llama.gpu_kinds.pin[1]", "'L4' given twice"),
        ({"deployments": {"llama": {"gpu_kinds": {"only": ["L4"]}}}},
         "deployments.llama.gpu_kinds.only", "unknown field"),
        ({"hardware_moves": "no"}, "hardware_moves", "expected true or false, got 'no'"),
        ({"deployments": {"llama": {"routing": "random"}}},
         "deployments.llama.routing", "got 'random'"),
        ({"deployments": {"llama": {"kv_offload_gib": -1}}},
         "deployments.llama.kv_offload_gib", "got -1"),
    ],
)  # fmt: skip
def test_bad_changes_name_the_field(
    scenario: Scenario, changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(WhatIfInputError) as caught:
        whatif_scenario(scenario=scenario, changes=changes)
    assert caught.value.field == field
    assert message in caught.value.message


# Each what-if value at its shared bound (advisor.engine.bounds) and just beyond it: the same
# numbers the admin's validators and the database's checks use.
AT_AND_BEYOND = [
    ("slo", "ttft_p95_s", 3600.0, 3600.0000001, "expected a number > 0 and <= 3600 s"),
    ("slo", "ttft_p95_s", 1e-9, 0.0, "expected a number > 0 and <= 3600 s"),
    ("slo", "tpot_p95_s", 60.0, 60.001, "expected a number > 0 and <= 60 s"),
    ("slo", "max_quality_loss_points", 0.0, -0.001,
     "expected a number >= 0 and <= 100 points"),
    ("slo", "max_quality_loss_points", 100.0, 100.001,
     "expected a number >= 0 and <= 100 points"),
    ("price", "H100-SXM", 0.0, -0.01, "expected a number >= 0 and <= 1000 USD per GPU-hour"),
    ("price", "H100-SXM", 1000.0, 1000.01,
     "expected a number >= 0 and <= 1000 USD per GPU-hour"),
    ("replicas", "replicas", 512, 513, "expected a whole number in [1, 512]"),
]  # fmt: skip


def _change(kind: str, key: str, value: float) -> dict[str, object]:
    if kind == "price":
        return {"prices": {key: value}}
    if kind == "replicas":
        return {"deployments": {"llama": {"replicas": value}}}
    return {"deployments": {"llama": {"slo": {key: value}}}}


@pytest.mark.parametrize(("kind", "key", "at", "beyond", "message"), AT_AND_BEYOND)
def test_it_accepts_a_value_at_the_shared_bound_and_refuses_one_beyond(
    scenario: Scenario, kind: str, key: str, at: float, beyond: float, message: str
) -> None:
    accepted = whatif_scenario(scenario=scenario, changes=_change(kind, key, at))
    if kind == "price":
        assert accepted.scenario.prices[key].usd_per_gpu_hour == at
    elif kind == "replicas":
        assert accepted.scenario.deployment("llama").replicas == at
    else:
        assert getattr(accepted.scenario.deployment("llama").slo, key) == at
    with pytest.raises(WhatIfInputError) as caught:
        whatif_scenario(scenario=scenario, changes=_change(kind, key, beyond))
    field = f"prices.{key}" if kind == "price" else (
        "deployments.llama.replicas" if kind == "replicas" else f"deployments.llama.slo.{key}"
    )  # fmt: skip
    assert caught.value.field == field
    assert caught.value.message == f"{message}, got {beyond!r}"


def test_a_price_change_keeps_the_rows_count_limit(scenario: Scenario) -> None:
    limited = replace(scenario, prices={"H100-SXM": PriceEntry(4.0, "contract", max_gpus=8)})
    accepted = whatif_scenario(scenario=limited, changes={"prices": {"H100-SXM": 2.0}})
    assert accepted.scenario.prices["H100-SXM"] == PriceEntry(
        2.0, "what-if (was $4: contract)", max_gpus=8
    )


@pytest.mark.django_db
def test_the_engine_answers_the_changed_scenario() -> None:
    assessment = assessment_completed(cluster=Cluster.objects.create(name="prod"), end=START)
    stored_plan = assessment.plan["fleet_plan"]["usd_per_month"]

    cheaper = whatif_simulate(assessment=assessment, changes={"prices": {"H100-SXM": 2.0}})
    # one GPU kind: halving its price halves every cost, so the same plan costs half
    assert cheaper.outcome.plan["fleet_plan"]["usd_per_month"] == pytest.approx(stored_plan / 2)
    assert cheaper.described == ("price of H100-SXM $4 -> $2 per GPU-hour",)

    batching_only = whatif_simulate(assessment=assessment, changes={"strategies": ["batching"]})
    rows = batching_only.outcome.plan["combinations"]
    assert [row["strategies"] for row in rows] == [[], ["batching"]]
    for plan in batching_only.outcome.plan["deployments"]:
        assert set(plan["strategies"]) <= {"batching"}
    assert batching_only.fields()["plan"]["fleet_plan"]["usd_per_month"] >= stored_plan - 1e-6


@pytest.mark.django_db
def test_it_keeps_a_deployment_whose_change_does_not_fit_at_todays_cost() -> None:
    # Issue 16, item 4: 70B on one L4 does not fit; the totals dropped it, so the headline
    # showed the other deployment's savings as the fleet's.
    assessment = assessment_with_big(cluster=Cluster.objects.create(name="prod"), end=START)
    today = {d["deployment"]: d["baseline"] for d in assessment.plan["deployments"]}

    result = whatif_simulate(
        assessment=assessment,
        changes={"deployments": {"big": {"hardware": "L4", "tensor_parallel": 1}}},
    )
    plan = result.outcome.plan
    status = {d["deployment"]: d["status"] for d in plan["deployments"]}
    assert status == {"llama": "ok", "big": "error"}
    [held] = plan["held"]
    assert (held["deployment"], held["status"], held["hardware"]) == (
        "big",
        "infeasible",
        "H100-SXM",
    )
    assert held["reason"].startswith("the change does not fit (deployments[1].tensor_parallel: ")
    assert "does not fit" in held["reason"]
    assert held["gpus"] == today["big"]["gpus"] == 2.0
    assert held["usd_per_month"] == pytest.approx(today["big"]["usd_per_month"])
    llama = next(d for d in plan["deployments"] if d["deployment"] == "llama")
    # both sides of the totals keep big at today's cost: it adds no savings
    assert plan["fleet_baseline"]["usd_per_month"] == pytest.approx(
        llama["baseline"]["usd_per_month"] + today["big"]["usd_per_month"]
    )
    assert plan["fleet_plan"]["usd_per_month"] == pytest.approx(
        llama["plan"]["usd_per_month"] + today["big"]["usd_per_month"]
    )
    saved = llama["baseline"]["usd_per_month"] - llama["plan"]["usd_per_month"]
    assert plan["savings_usd_per_month"] == pytest.approx(saved)
    assert plan["savings_fraction"] == pytest.approx(
        saved / (llama["baseline"]["usd_per_month"] + today["big"]["usd_per_month"])
    )
    assert plan["fleet_baseline"]["gpus"] == pytest.approx(llama["baseline"]["gpus"] + 2.0)
    for row in plan["combinations"]:
        assert row["savings_fraction"] == pytest.approx(
            row["savings_usd_per_month"] / plan["fleet_baseline"]["usd_per_month"]
        )
