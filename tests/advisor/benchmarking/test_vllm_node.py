"""The load client against real vLLM CPU servers (tiny model): what it measures is real.

- the session node: agreement with `vllm bench serve`, exact prompts with the real tokenizer
  (completions text and chat), counters that match the server's, a concurrency sweep;
- n-gram speculative decoding on (one restart with `--speculative-config`) vs off (the session
  node, same args otherwise): the acceptance counters, written to
  `var/test-logs/ab-ngram-spec-decode.json`.

Continuous batching (`--max-num-seqs 1` vs `64`) is measured by an A/B benchmark job on a real
Celery worker: `test_jobs_vllm.py`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from advisor.benchmarking.ab import Variant, compare, run_variants
from advisor.benchmarking.export import dumps
from advisor.benchmarking.runner import Limits, RunOptions, Target, run_benchmark
from advisor.benchmarking.sweep import asweep
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.engine.workload import closed_loop_workload
from probes.agent.vllm_process import VllmProcess
from tests.engine.vllm_bench import BenchPoint, run_vllm_bench
from tests.support.components import missing
from tests.support.vllm_node import LOG_DIR, SERVED_NAME, TINY_MODEL, VLLM_PYTHON, tiny_launch

pytestmark = pytest.mark.integration

NGRAM = '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}'
# Greedy: n-gram drafts only pay off (and only get proposed) on repetitive text, which a
# random-weight model produces under greedy decoding; both sides of the A/B get the same.
GREEDY = RunOptions(extra_body={"temperature": 0}, metrics_sample_s=0.2)
LIMITS = Limits(max_duration_s=240, request_timeout_s=240, read_timeout_s=60)


def _target(node: VllmProcess, api: str = "completions") -> Target:
    return Target(node.launch.base_url, SERVED_NAME, api=api)  # type: ignore[arg-type]


def test_it_reads_spec_decode_counters_in_an_ab(vllm_node: VllmProcess) -> None:
    """Off: the session node; on: the same engine args plus n-gram drafts (a restart)."""
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    workload = closed_loop_workload(
        num_requests=64, concurrency=64, prompt_tokens=32, output_tokens=64
    )
    off = run_benchmark(_target(vllm_node), workload, limits=LIMITS, options=GREEDY)
    (on_run,) = run_variants(
        tiny_launch(), [Variant("ngram", ("--speculative-config", NGRAM))], workload,
        log_dir=LOG_DIR, limits=LIMITS, options=GREEDY,
    )  # fmt: skip
    on = on_run.result
    assert off.status == "completed", off.error
    assert on.status == "completed", on.error
    comparison = compare(off, on)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "ab-ngram-spec-decode.json").write_text(
        json.dumps({"comparison": comparison, "off": json.loads(dumps(off, include_requests=False)),
                    "on": json.loads(dumps(on, include_requests=False))}, indent=1)
    )  # fmt: skip

    assert on.summary["completed"] == 64
    assert on.summary["total_output_tokens"] == 64 * 64  # drafts change speed only
    assert off.server_metrics["spec_decode_num_drafts"] is None  # no counters when off
    metrics = on.server_metrics
    assert metrics["spec_decode_num_drafts"] > 0
    assert 0 < metrics["spec_decode_accepted_tokens"] <= metrics["spec_decode_draft_tokens"]
    assert 0.0 < comparison["candidate_spec_decode_acceptance_rate"] <= 100.0
    assert metrics["spec_decode_acceptance_length"] == pytest.approx(
        1 + metrics["spec_decode_accepted_tokens"] / metrics["spec_decode_num_drafts"]
    )
    assert len(metrics["spec_decode_per_position_acceptance_rates"]) == 4


def test_it_agrees_with_vllm_bench_serve(vllm_node: VllmProcess) -> None:
    base_url = vllm_node.launch.base_url
    workload = closed_loop_workload(
        num_requests=64, concurrency=16, prompt_tokens=32, output_tokens=128
    )
    ours: list[float] = []

    # like vllm bench: /metrics before and after only (scrapes cost the server CPU here)
    options = RunOptions(metrics_sample_s=0)

    def measure(seed: int) -> None:
        result = run_benchmark(_target(vllm_node), workload, options=replace(options, seed=seed))
        assert result.status == "completed", result.error
        assert result.summary["failed"] == 0
        assert result.summary["completed"] == 64
        assert result.summary["total_input_tokens"] == 64 * 32
        assert result.summary["total_output_tokens"] == 64 * 128
        ours.append(result.output_throughput)

    # ours, vLLM's twice (one process: importing vLLM takes ~20 s), ours: drift hits both
    measure(0)
    points = [BenchPoint(16, 64, 32, 128, seed=seed) for seed in (0, 1)]
    runs = run_vllm_bench(base_url, points)
    measure(1)

    for run in runs:  # the same work, counted the same way
        assert run["completed"] == 64
        assert run["total_output_tokens"] == 64 * 128
        # vLLM's random prompts are text decoded from random ids and re-encoded, which lands
        # a token or so off now and then (ours are exact: asserted above)
        assert run["total_input_tokens"] == pytest.approx(64 * 32, rel=0.05)
    theirs = [float(run["output_throughput"]) for run in runs]
    # Other work on a shared machine only ever slows a run down: compare the best of each.
    ratio = max(ours) / max(theirs)
    print(f"ours {ours} vllm bench {theirs} best/best {ratio:.3f}")
    # The tight figure is bench_client_vs_vllm_bench_ratio (a quiet machine, five rounds);
    # on a 2-core box shared with other test runs, single runs vary up to 2x, so this only
    # catches a client that mis-measures grossly (double counting, a stalled loop, ...).
    assert 0.5 <= ratio <= 2.0


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_it_builds_exact_text_prompts_with_the_real_tokenizer(
    vllm_node: VllmProcess, api: str
) -> None:
    workload = closed_loop_workload(
        num_requests=24, concurrency=8, prompt_tokens=48, output_tokens=4
    )
    lengths = WorkloadSpec("concurrency", num_requests=24, concurrency=8, prompt_tokens=48,
                           output_tokens=4, range_ratio=0.5, seed=5).build()  # fmt: skip
    for load in (workload, lengths):
        result = run_benchmark(
            _target(vllm_node, api), load, options=RunOptions(prompt_mode="text")
        )

        assert result.status == "completed", result.error
        assert result.prompts is not None
        assert result.prompts.mode == "text"
        assert result.prompts.mismatched == 0
        assert [r.prompt_tokens for r in result.requests] == load.prompt_tokens.tolist()


def test_it_sees_the_same_tokens_as_the_server(vllm_node: VllmProcess) -> None:
    workload = closed_loop_workload(
        num_requests=32, concurrency=8, prompt_tokens=40, output_tokens=24
    )
    result = run_benchmark(_target(vllm_node), workload)

    assert result.status == "completed", result.error
    assert result.metrics_error == ""
    summary, metrics = result.summary, result.server_metrics
    assert summary["total_input_tokens"] == 32 * 40
    assert summary["total_output_tokens"] == 32 * 24
    assert metrics["prompt_tokens"] == summary["total_input_tokens"]
    assert metrics["generation_tokens"] == summary["total_output_tokens"]
    assert metrics["requests_finished"] == summary["completed"] == 32
    assert metrics["preemptions"] == 0
    assert metrics["server_p50_ttft_ms"] is not None


def test_it_sweeps_concurrency_on_a_real_node(vllm_node: VllmProcess) -> None:
    spec = WorkloadSpec("concurrency", num_requests=16, concurrency=1, prompt_tokens=16,
                        output_tokens=32)  # fmt: skip
    sweep = asyncio.run(asweep(_target(vllm_node), spec, "concurrency", [1, 8]))

    assert sweep.status == "completed", sweep.error
    single, batched = (point.result.summary for point in sweep.points)
    assert single["completed"] == batched["completed"] == 16
    assert batched["output_throughput"] > single["output_throughput"]
