"""The plan's tables: here, the plan at assumed prefix reuse where the sample has no hashes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from advisor.engine.advice import DeploymentPlan, ReusePoint
from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.planner import assess
from advisor.engine.prefix_reuse import synthetic_prefix
from advisor.engine.scenario import DeploymentSpec, SloSpec, WorkloadSpec
from tests.engine.strategies.helpers import deployment, scenario

HOURS = 730.0
H100_USD_PER_MONTH = DEFAULT_CATALOG.gpu("H100-SXM").price_usd_per_hour * HOURS


def prefill_heavy() -> DeploymentSpec:
    """Llama-3-8B at 80 req/s of ~3,000-token prompts and ~40-token answers: prefill-bound."""
    return deployment("rag", rate_rps=80, replicas=4, prompt=3000, output=40,
                      slo=SloSpec(2.0, 0.1))  # fmt: skip


@pytest.fixture(scope="module")
def unknown() -> DeploymentPlan:
    return assess(scenario(prefill_heavy())).deployment("rag")


def test_it_shows_the_plan_at_0_30_and_60_percent_reuse_when_reuse_is_unknown(
    unknown: DeploymentPlan,
) -> None:
    assert unknown.status == "ok"
    assert unknown.config["weight_dtype"] == "fp8"
    # the chosen configuration re-sized: 5 replicas without reuse, 4 at 30%, 3 at 60%
    assert [(p.reuse_share, p.meets_slo) for p in unknown.prefix_reuse] == [
        (0.0, True), (0.3, True), (0.6, True)
    ]  # fmt: skip
    assert [p.usd_per_month for p in unknown.prefix_reuse] == pytest.approx(
        [5 * H100_USD_PER_MONTH, 4 * H100_USD_PER_MONTH, 3 * H100_USD_PER_MONTH]
    )
    assert unknown.plan is not None
    assert unknown.plan.usd_per_month == pytest.approx(5 * H100_USD_PER_MONTH)
    again = ReusePoint.from_dict(unknown.prefix_reuse[1].to_dict())
    assert again == unknown.prefix_reuse[1]


def test_it_costs_every_share_the_same_with_prefix_caching_off() -> None:
    spec = prefill_heavy()
    off = replace(spec, engine_args=replace(spec.engine_args, enable_prefix_caching=False))
    rag = assess(scenario(off)).deployment("rag")
    costs = {point.usd_per_month for point in rag.prefix_reuse}
    assert len(rag.prefix_reuse) == 3
    assert rag.plan is not None
    assert costs == {rag.plan.usd_per_month}


def test_it_leaves_out_a_deployment_whose_sample_has_block_hashes() -> None:
    spec = prefill_heavy()
    sample = spec.workload.sample
    hashed = replace(sample, prefix=synthetic_prefix(np.asarray(sample.prompt_tokens), 0.3, 16))
    known = replace(spec, workload=WorkloadSpec(hashed, spec.workload.load))
    rag = assess(scenario(known)).deployment("rag")
    assert rag.status == "ok"
    assert rag.prefix_reuse == ()
