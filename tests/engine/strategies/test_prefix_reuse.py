"""Prefix reuse in an assessment: block hashes change today's projection and its assumptions."""

from __future__ import annotations

from dataclasses import replace

from advisor.engine.scenario import DeploymentSpec, EngineArgs
from advisor.engine.strategies import batching
from advisor.engine.workload import PrefixBlocks, Workload
from tests.engine.strategies.helpers import context, deployment, run


def with_system_prompt(spec: DeploymentSpec, shared_blocks: int) -> DeploymentSpec:
    """Every prompt opens with the same `shared_blocks` 512-token blocks, then its own."""
    sample = spec.workload.sample
    rows = [
        [j if j < shared_blocks else 1000 * (i + 1) + j for j in range(-(-p // 512))]
        for i, p in enumerate(sample.prompt_tokens.tolist())
    ]
    hashed = Workload(
        sample.arrival_s,
        sample.prompt_tokens,
        sample.output_tokens,
        None,
        sample.name,
        PrefixBlocks.from_lists(512, rows),
    )
    return replace(spec, workload=replace(spec.workload, sample=hashed))


def test_a_shared_system_prompt_lowers_todays_ttft_and_is_stated() -> None:
    plain = deployment(rate_rps=4.0, prompt=3000, output=100)
    hashed = with_system_prompt(plain, shared_blocks=4)
    without = run(batching, context(plain), "chat")
    with_reuse = run(batching, context(hashed), "chat")
    # 2048 of ~3000 prompt tokens are found in the cache after the first request
    assert with_reuse.baseline.ttft_p50_s < 0.7 * without.baseline.ttft_p50_s
    assert with_reuse.baseline.usd_per_month == without.baseline.usd_per_month  # same GPUs
    assert any(
        line.startswith("prefix reuse unknown: the request sample carries no prompt block")
        for line in without.assumptions
    )
    assert any(
        line.startswith("prefix reuse 6") and "512-token blocks" in line
        for line in with_reuse.assumptions
    )


def test_a_deployment_without_prefix_caching_gains_nothing_from_hashes() -> None:
    plain = deployment(rate_rps=4.0, prompt=3000, output=100)
    off = replace(plain, engine_args=EngineArgs(enable_prefix_caching=False))
    hashed = with_system_prompt(off, shared_blocks=4)
    without = run(batching, context(plain), "chat")
    hashed_off = run(batching, context(hashed), "chat")
    assert hashed_off.baseline.ttft_p50_s == without.baseline.ttft_p50_s
    assert hashed_off.baseline.ttft_p95_s == without.baseline.ttft_p95_s
