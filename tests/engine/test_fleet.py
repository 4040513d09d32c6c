"""Fleet model and HPA simulation over a load, on a real load curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from advisor.engine.autoscale import HpaPolicy, simulate_hpa
from advisor.engine.capacity import LoadCurve, ReplicaConfig, SloTargets, WorkloadShape, load_curve
from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.fleet import Economics, evaluate_fleet, fixed_fleet
from advisor.engine.profiles import DEFAULT_PROFILES
from advisor.engine.scenario import LoadShape
from tests.engine.strategies.helpers import sample

H100 = DEFAULT_CATALOG.gpu("H100-SXM")
SLO = SloTargets(1.0, 0.05)
ECONOMICS = Economics(usd_per_gpu_hour=4.0, idle_w=70.0, max_w=700.0, hours_per_month=730.0)


@pytest.fixture(scope="module")
def curve() -> LoadCurve:
    config = ReplicaConfig(DEFAULT_CATALOG.model("Llama-3-8B"), H100, "bf16", 1, 256, 8192)
    shape = WorkloadShape.of(sample(5.0), num_requests=600, seed=0)
    return load_curve(config, shape, DEFAULT_PROFILES.lookup("H100-SXM", "vllm"), SLO)


def test_it_simulates_a_curve_whose_latency_grows_with_load(curve: LoadCurve) -> None:
    assert curve.feasible
    assert 0 < curve.slo_rps < curve.saturation_rps
    assert np.all(np.diff(curve.rates_rps) > 0)
    assert curve.ttft_q_s[-1, 95] > curve.ttft_q_s[0, 95]
    assert curve.busy_fraction[-1] > curve.busy_fraction[0]


def test_it_prices_fixed_replicas_exactly(curve: LoadCurve) -> None:
    rate = 0.5 * curve.slo_rps
    load = LoadShape(np.full(600, rate))
    replicas = np.full(600, 3.0)
    run = evaluate_fleet(curve, load, replicas, replicas, ECONOMICS, SLO, mean_output_tokens=150.0)
    p = run.projection
    assert p.gpus == 3.0
    assert p.usd_per_hour == pytest.approx(12.0)
    assert p.usd_per_month == pytest.approx(12.0 * 730)
    assert p.utilization == pytest.approx(rate / (3 * curve.saturation_rps))
    assert p.output_tokens_per_s == pytest.approx(rate * 150.0)
    assert p.usd_per_1m_output_tokens == pytest.approx(12.0 / (rate * 150.0 * 3600) * 1e6)
    assert p.meets_slo
    assert run.overloaded_steps == 0


def test_it_counts_energy_per_month_and_per_token(curve: LoadCurve) -> None:
    rate = 0.5 * curve.slo_rps
    load = LoadShape(np.full(600, rate))
    replicas = np.full(600, 3.0)
    p = evaluate_fleet(
        curve, load, replicas, replicas, ECONOMICS, SLO, mean_output_tokens=150.0
    ).projection
    # each billed GPU draws idle power, plus (max - idle) x the share of time it is busy
    busy = float(np.interp(rate / 3, *curve.grid0(curve.busy_fraction)))
    watts = 3 * 70.0 + 3 * busy * 630.0
    assert p.busy_fraction == pytest.approx(busy)
    assert p.energy_kwh_per_month == pytest.approx(watts * 730 / 1000)
    assert p.energy_j_per_output_token == pytest.approx(watts / (rate * 150.0))


def test_it_counts_the_idle_power_of_a_fleet_without_requests(curve: LoadCurve) -> None:
    load = LoadShape(np.zeros(600))
    replicas = np.full(600, 3.0)
    p = evaluate_fleet(
        curve, load, replicas, replicas, ECONOMICS, SLO, mean_output_tokens=150.0
    ).projection
    assert p.energy_kwh_per_month == pytest.approx(3 * 70.0 * 730 / 1000)
    assert p.energy_j_per_output_token == math.inf


def test_it_lets_a_backlog_build_when_under_provisioned(curve: LoadCurve) -> None:
    load = LoadShape(np.full(120, 2.0 * curve.saturation_rps))
    one = np.ones(120)
    run = evaluate_fleet(curve, load, one, one, ECONOMICS, SLO, mean_output_tokens=150.0)
    assert run.overloaded_steps == 120
    assert run.projection.slo_attainment < 0.1
    assert not run.projection.meets_slo
    assert run.projection.ttft_p95_s > 60.0  # waits for the growing backlog


def test_it_sizes_the_fewest_replicas_meeting_the_slos(curve: LoadCurve) -> None:
    load = LoadShape(np.full(600, 2.5 * curve.slo_rps))
    replicas, run = fixed_fleet(curve, load, ECONOMICS, SLO, mean_output_tokens=150.0)
    assert replicas == 3
    assert run.projection.meets_slo
    fewer = np.full(600, 2.0)
    worse = evaluate_fleet(curve, load, fewer, fewer, ECONOMICS, SLO, mean_output_tokens=150.0)
    assert not worse.projection.meets_slo


def test_it_scales_up_after_the_cold_start_and_down_after_the_window(curve: LoadCurve) -> None:
    rate = np.concatenate((np.full(30, 0.5), np.full(30, 3.0), np.full(30, 0.5))) * curve.slo_rps
    load = LoadShape(rate)
    policy = HpaPolicy(
        "kv_cache_usage", float(curve.interp0(curve.kv_usage, 0.7 * curve.slo_rps)), 1, 10
    )
    ready, billed = simulate_hpa(curve, load, policy, cold_start_s=120.0)
    assert ready[:25].max() == 1.0
    step_up = int(np.argmax(billed > 1.0))
    assert 30 <= step_up <= 32
    # billed at once, serving two minutes (the cold start) later
    assert ready[step_up] < billed[step_up]
    assert ready[step_up + 3] == billed[step_up + 3] >= 3.0
    # after the load drops at minute 60 the replicas stay for the 5-minute window
    assert billed[61:65].min() == billed[59]
    assert billed[70:].max() < billed[59]
    assert math.isclose(billed[-1], 1.0)
