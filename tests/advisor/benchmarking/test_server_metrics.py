"""The server's view of a run, from two real vLLM 0.32 /metrics texts (idle, then 5 requests)."""

from __future__ import annotations

from pathlib import Path

from advisor.benchmarking.server_metrics import GaugeSample, metrics_summary
from probes.agent.vllm_metrics import parse_snapshot

DATA = Path(__file__).resolve().parents[2] / "probes" / "agent" / "data"
IDLE = parse_snapshot((DATA / "vllm-0.32-idle.txt").read_text(), scraped_at_s=100.0)
AFTER = parse_snapshot((DATA / "vllm-0.32-after-5-requests.txt").read_text(), scraped_at_s=112.5)


def test_it_counts_engine_steps_and_tokens_per_step_from_the_step_histogram() -> None:
    summary = metrics_summary(IDLE, AFTER, [])

    assert summary["window_s"] == 12.5
    assert summary["engine_steps"] == 160.0
    assert summary["mean_tokens_per_step"] == 345.0 / 160.0


def test_it_takes_gauge_peaks_over_the_samples_and_both_ends() -> None:
    samples = [GaugeSample(1.0, 3.0, 2.0, 0.25), GaugeSample(2.0, 5.0, None, 0.5)]

    summary = metrics_summary(IDLE, AFTER, samples, failures=["x/metrics: timed out"] * 2)

    assert summary["samples"] == 2
    assert summary["max_num_requests_running"] == 5.0
    assert summary["mean_num_requests_running"] == 4.0
    assert summary["max_num_requests_waiting"] == 2.0
    assert summary["max_kv_cache_usage"] == 0.5
    assert summary["samples_failed"] == 2
    assert summary["last_sample_error"] == "x/metrics: timed out"


def test_it_leaves_step_figures_empty_when_the_server_has_no_step_histogram() -> None:
    bare = parse_snapshot(
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 0\n',
        scraped_at_s=1.0,
    )

    summary = metrics_summary(bare, bare, [])

    assert summary["engine_steps"] is None
    assert summary["mean_tokens_per_step"] is None
    assert summary["samples_failed"] == 0
    assert summary["last_sample_error"] is None


def test_it_reports_counter_increases_over_the_window() -> None:
    summary = metrics_summary(IDLE, AFTER, [])

    # 5 requests of 37 prompt tokens and 32 output tokens each
    assert summary["prompt_tokens"] == 185.0
    assert summary["generation_tokens"] == 160.0
    assert summary["requests_finished"] == 5.0
    assert summary["counter_reset"] is False
