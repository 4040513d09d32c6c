"""`python -m advisor.engine assess`: plan JSON out, field-naming errors, the example loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.engine.__main__ import main
from advisor.engine.advice import Plan
from advisor.engine.scenario import Scenario, load_scenario
from tests.engine.strategies.helpers import deployment, scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "advisor" / "engine" / "examples" / "fleet.json"


def test_it_prints_the_plan_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_text(scenario(deployment("chat", rate_rps=2.0, replicas=2)).to_json())
    assert main(["assess", str(path), "--strategies", "batching,autoscaling", "--summary"]) == 0
    out, err = capsys.readouterr()
    plan = Plan.from_json(out)
    assert plan.deployment("chat").status == "ok"
    assert {r.strategy for r in plan.strategy_results} == {"batching", "autoscaling"}
    assert "fleet plan:" in err
    assert "strategy combination" in err
    assert f"{plan.fleet_plan.energy_kwh_per_month:,.0f} kWh/month; saves" in err


def test_it_names_the_bad_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(scenario(deployment("chat")).to_json())
    data["deployments"][0]["slo"]["ttft_p95_s"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["assess", str(path)]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == "error: deployments[0].slo.ttft_p95_s: must be > 0 and <= 3600 s, got -1"


def test_it_loads_the_example_scenario() -> None:
    example = load_scenario(EXAMPLE)
    assert len(example.deployments) == 7
    assert Scenario.from_json(example.to_json()) == example
    for item in example.deployments:
        load = item.workload.load
        assert load is not None
        assert load.rate_rps.size == 7 * 1440
