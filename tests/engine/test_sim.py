"""Serving simulator: hand-checked timings, invariants, and the fast path against the reference."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.perf import CalibrationProfile, ConfigError, Deployment, step_time
from advisor.engine.results import Slo
from advisor.engine.sim import (
    Replica,
    SchedulerConfig,
    StaticBatchConfig,
    host_capacity_tokens,
    host_load_tokens,
    prefill_s_per_token,
    prefix_cached_tokens_on,
    prefix_hits_on,
    simulate,
    simulate_static,
    vllm_default_scheduler,
)
from advisor.engine.sim_reference import simulate_reference
from advisor.engine.workload import (
    PrefixBlocks,
    Workload,
    closed_loop_workload,
    synthetic_workload,
)

PROFILE = CalibrationProfile(step_overhead_s=1e-3, seq_overhead_s=2e-5, overlap=0.3)
H100 = DEFAULT_CATALOG.gpu("H100-SXM")
LLAMA8 = DEFAULT_CATALOG.model("Llama-3-8B")
BF16 = DEFAULT_CATALOG.quant("bf16")


def llama_replica(**scheduler: object) -> Replica:
    return Replica(
        Deployment(H100, LLAMA8, BF16),
        SchedulerConfig(**scheduler) if scheduler else vllm_default_scheduler(H100),  # type: ignore[arg-type]
        PROFILE,
    )


def tiny_replica(
    kv_cache_bytes: int, scheduler: SchedulerConfig, profile: CalibrationProfile = PROFILE
) -> Replica:
    deployment = Deployment(
        DEFAULT_CATALOG.gpu("CPU-DEV-2C"),
        DEFAULT_CATALOG.model("tiny-llama"),
        BF16,
        kv_cache_bytes=kv_cache_bytes,
        max_model_len=2048,
    )
    return Replica(deployment, scheduler, profile)


def with_shared_prefixes(
    workload: Workload, rng: np.random.Generator, *, block_tokens: int
) -> Workload:
    """Each request opens with up to 2 blocks of one of 3 shared prompts, then its own blocks."""
    rows = []
    for r, prompt in enumerate(workload.prompt_tokens.tolist()):
        group = int(rng.integers(3))
        blocks = -(-prompt // block_tokens)
        rows.append([10 * group + j if j < 2 else 1000 * (r + 1) + j for j in range(blocks)])
    return Workload(
        workload.arrival_s,
        workload.prompt_tokens,
        workload.output_tokens,
        workload.max_concurrency,
        workload.name,
        PrefixBlocks.from_lists(block_tokens, rows),
    )


def one_request(prompt: int, output: int) -> Workload:
    return Workload(np.zeros(1), np.array([prompt]), np.array([output]))


def test_it_times_a_lone_request_by_hand() -> None:
    replica = llama_replica()
    coef = replica.step_model.coef
    result = simulate(replica, one_request(100, 5))
    prefill = step_time(coef, 0, 0, 100, 100.0, 100 * 50.5, 1)
    # four decode steps, attending over 101..104 tokens
    decodes = [step_time(coef, 1, 101 + j, 0, 0.0, 0.0, 1) for j in range(4)]
    assert result.first_token_s[0] == pytest.approx(prefill)
    assert result.finish_s[0] == pytest.approx(prefill + sum(decodes))
    metrics = result.metrics()
    assert metrics.tpot_s.p50 == pytest.approx(sum(decodes) / 4)
    assert metrics.output_throughput_tok_s == pytest.approx(5 / (prefill + sum(decodes)))
    assert metrics.busy_fraction == pytest.approx(1.0)


def test_it_adds_the_api_latency_before_scheduling() -> None:
    base = llama_replica()
    slow = Replica(base.deployment, base.scheduler, replace(PROFILE, api_latency_s=0.02))
    workload = closed_loop_workload(
        num_requests=3, concurrency=1, prompt_tokens=50, output_tokens=4
    )
    fast_run, slow_run = simulate(base, workload), simulate(slow, workload)
    # each request reaches the scheduler 20 ms after it is sent; the next is sent on completion
    ttft = slow_run.first_token_s - slow_run.send_s
    assert ttft == pytest.approx(fast_run.first_token_s - fast_run.send_s + 0.02)
    assert slow_run.finish_s[-1] == pytest.approx(fast_run.finish_s[-1] + 3 * 0.02)
    assert slow_run.metrics().tpot_s.p50 == pytest.approx(fast_run.metrics().tpot_s.p50)


def test_it_finishes_every_request_exactly_once() -> None:
    workload = synthetic_workload(
        np.random.default_rng(3),
        num_requests=2000,
        rate_rps=40.0,
        prompt_tokens=800,
        output_tokens=200,
        range_ratio=0.9,
    )
    result = simulate(llama_replica(), workload)
    metrics = result.metrics()
    assert metrics.completed + metrics.rejected == 2000
    assert metrics.rejected == 0
    done = result.completed
    assert np.all(result.send_s[done] >= workload.arrival_s[done])
    assert np.all(result.first_token_s[done] > result.send_s[done])
    assert np.all(result.finish_s[done] >= result.first_token_s[done])


def test_it_rejects_requests_longer_than_max_model_len() -> None:
    workload = Workload(np.zeros(2), np.array([100, 9000]), np.array([10, 10]))
    metrics = simulate(llama_replica(), workload).metrics()
    assert (metrics.completed, metrics.rejected) == (1, 1)


def test_it_raises_latency_with_load() -> None:
    base = synthetic_workload(
        np.random.default_rng(4),
        num_requests=3000,
        rate_rps=1.0,
        prompt_tokens=1000,
        output_tokens=250,
    )
    medians = []
    for rate in (2.0, 8.0, 16.0, 24.0, 32.0):
        metrics = simulate(llama_replica(), base.with_rate(rate)).metrics()
        medians.append((metrics.e2e_s.p50, metrics.ttft_s.p90, metrics.tpot_s.p50))
    for (e2e_a, ttft_a, tpot_a), (e2e_b, ttft_b, tpot_b) in itertools.pairwise(medians):
        assert e2e_b >= e2e_a
        assert ttft_b >= ttft_a
        # past saturation the batch is capped by KV space, so TPOT plateaus (within 1%)
        assert tpot_b >= tpot_a * 0.99


def test_it_serves_more_with_continuous_than_static_batching() -> None:
    workload = synthetic_workload(
        np.random.default_rng(5),
        num_requests=1500,
        rate_rps=math.inf,
        prompt_tokens=500,
        output_tokens=300,
        range_ratio=0.9,
    )
    replica = llama_replica()
    continuous = simulate(replica, workload).metrics()
    static = simulate_static(replica, workload, StaticBatchConfig(batch_size=64, timeout_s=0.5))
    assert continuous.output_throughput_tok_s > 1.5 * static.metrics().output_throughput_tok_s
    assert continuous.completed == static.metrics().completed == 1500


def test_it_runs_a_static_batch_until_its_longest_request_ends() -> None:
    replica = llama_replica()
    coef = replica.step_model.coef
    workload = Workload(np.array([0.0, 0.1]), np.array([10, 20]), np.array([3, 6]))
    result = simulate_static(replica, workload, StaticBatchConfig(batch_size=2, timeout_s=5.0))
    # dispatched when the second request arrives; both prompts padded to 20 tokens
    prefill = step_time(coef, 0, 0, 40, 40.0, 2 * 20 * 10.5, 2)
    decodes = [step_time(coef, 2, 2 * 21 + 2 * j, 0, 0.0, 0.0, 2) for j in range(5)]
    assert result.first_token_s.tolist() == pytest.approx([0.1 + prefill] * 2)
    assert result.finish_s.tolist() == pytest.approx([0.1 + prefill + sum(decodes)] * 2)
    alone = simulate_static(replica, workload, StaticBatchConfig(batch_size=2, timeout_s=0.05))
    assert alone.first_token_s[0] == pytest.approx(0.05 + step_time(coef, 0, 0, 10, 10.0, 55.0, 1))


def test_it_preempts_when_kv_runs_out() -> None:
    # 96 KiB of KV at 1 KiB per token: 96 tokens, 6 blocks of 16
    replica = tiny_replica(96 * 1024, SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64))
    workload = closed_loop_workload(
        num_requests=6, concurrency=6, prompt_tokens=10, output_tokens=40
    )
    fast = simulate(replica, workload)
    reference = simulate_reference(replica, workload)
    assert fast.total_preemptions > 0
    assert fast.total_preemptions == reference.total_preemptions
    assert fast.metrics().completed == 6
    np.testing.assert_allclose(fast.finish_s, reference.finish_s, rtol=1e-9)


def test_it_keeps_at_most_the_client_cap_in_flight() -> None:
    workload = synthetic_workload(
        np.random.default_rng(6),
        num_requests=400,
        rate_rps=50.0,
        prompt_tokens=300,
        output_tokens=100,
        range_ratio=0.5,
        max_concurrency=7,
    )
    result = simulate(llama_replica(), workload)
    events = sorted(
        [(t, 1) for t in result.send_s] + [(t, -1) for t in result.finish_s],
        key=lambda e: (e[0], e[1]),
    )
    in_flight = np.cumsum([delta for _, delta in events])
    assert in_flight.max() == 7


def test_it_reports_cost_slo_and_utilisation() -> None:
    workload = closed_loop_workload(
        num_requests=64, concurrency=16, prompt_tokens=512, output_tokens=128
    )
    result = simulate(llama_replica(), workload)
    metrics = result.metrics(Slo(ttft_s=0.05, tpot_s=0.02))
    tokens = 64 * 128
    assert metrics.output_throughput_tok_s == pytest.approx(tokens / metrics.duration_s)
    assert metrics.cost_usd == pytest.approx(39.33 / 8 * metrics.duration_s / 3600)
    assert metrics.cost_usd_per_1m_output_tokens == pytest.approx(metrics.cost_usd / tokens * 1e6)
    ttft = result.first_token_s - result.send_s
    tpot = (result.finish_s - result.first_token_s) / 127
    good = int(((ttft <= 0.05) & (tpot <= 0.02)).sum())
    assert metrics.slo_attainment == pytest.approx(good / 64)
    assert metrics.goodput_rps == pytest.approx(good / metrics.duration_s)
    assert 0 < metrics.mbu <= 1
    assert 0 < metrics.mfu <= 1
    assert 0 < metrics.kv_usage_mean <= metrics.kv_usage_peak < 1
    assert metrics.itl_s.p50 == pytest.approx(metrics.tpot_s.p50, rel=0.05)


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ({"max_num_seqs": 0}, "max_num_seqs: must be an integer >= 1"),
        (
            {"max_num_seqs": 512, "max_num_batched_tokens": 256},
            "max_num_batched_tokens: 256 is below",
        ),
    ],
)
def test_it_rejects_bad_scheduler_settings(scheduler: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SchedulerConfig(**scheduler)  # type: ignore[arg-type]


def test_it_refuses_unchunked_prefill_below_max_model_len() -> None:
    with pytest.raises(ConfigError, match="chunked prefill off"):
        llama_replica(max_num_batched_tokens=2048, enable_chunked_prefill=False)


def test_it_matches_the_reference_on_the_azure_conversation_shape() -> None:
    from advisor.engine.workload import load_azure_trace

    trace = load_azure_trace("probes/data/traces/AzureLLMInferenceTrace_conv.csv").head(300)
    replica = llama_replica(max_num_seqs=32, max_num_batched_tokens=2048)
    fast, reference = (
        simulate(replica, trace.with_rate(20.0)),
        simulate_reference(replica, trace.with_rate(20.0)),
    )
    np.testing.assert_allclose(fast.finish_s, reference.finish_s, rtol=1e-9)
    np.testing.assert_allclose(fast.first_token_s, reference.first_token_s, rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kv_tokens=st.integers(200, 5000),
    max_num_seqs=st.integers(1, 24),
    budget=st.integers(24, 400),
    chunked=st.booleans(),
    block=st.sampled_from([1, 4, 16]),
    rate=st.sampled_from([5.0, 100.0, math.inf]),
    cap=st.sampled_from([None, 1, 3, 12]),
    overlap=st.floats(0, 1),
    api_latency_s=st.sampled_from([0.0, 0.004, 0.05]),
    shared_prefix=st.booleans(),
)
def test_it_jumps_over_decode_runs_exactly_like_stepping(
    seed: int,
    kv_tokens: int,
    max_num_seqs: int,
    budget: int,
    chunked: bool,
    block: int,
    rate: float,
    cap: int | None,
    overlap: float,
    api_latency_s: float,
    shared_prefix: bool,
) -> None:
    budget = max(budget, max_num_seqs)
    scheduler = SchedulerConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget if chunked else 2048,
        enable_chunked_prefill=chunked,
        block_size_tokens=block,
    )
    profile = CalibrationProfile(
        step_overhead_s=5e-4, seq_overhead_s=3e-5, overlap=overlap, api_latency_s=api_latency_s
    )
    replica = tiny_replica(kv_tokens * 1024, scheduler, profile)
    workload = synthetic_workload(
        np.random.default_rng(seed),
        num_requests=60,
        rate_rps=rate,
        prompt_tokens=150,
        output_tokens=60,
        range_ratio=0.95,
        burstiness=0.5,
        max_concurrency=cap,
    )
    if shared_prefix:
        workload = with_shared_prefixes(workload, np.random.default_rng(seed), block_tokens=32)
    fast = simulate(replica, workload)
    reference = simulate_reference(replica, workload)
    for name in ("send_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(
            getattr(fast, name), getattr(reference, name), rtol=1e-9, atol=1e-12, err_msg=name
        )
    assert fast.preemptions.tolist() == reference.preemptions.tolist()
    assert fast.num_steps == reference.num_steps
    assert fast.bytes_per_device == pytest.approx(reference.bytes_per_device, rel=1e-9)
    assert fast.flops_per_device == pytest.approx(reference.flops_per_device, rel=1e-9)
    assert fast.peak_kv_blocks == reference.peak_kv_blocks
    assert fast.kv_block_seconds == pytest.approx(reference.kv_block_seconds, rel=0.02)
    fast_itl, ref_itl = fast.metrics().itl_s, reference.metrics().itl_s
    if not math.isnan(ref_itl.p50):
        assert fast_itl.p50 == pytest.approx(ref_itl.p50, rel=0.03)


def test_it_runs_prompts_alone_before_decodes_in_v0_prefill_first_scheduling() -> None:
    # V0 without chunked prefill: r1 arrives while r0 is prefilling; its prefill then runs
    # alone and r0's first decode waits for it (V1 would put both in one step)
    replica = llama_replica(
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        enable_chunked_prefill=False,
        prefill_first=True,
    )
    coef = replica.step_model.coef
    prefill = step_time(coef, 0, 0, 100, 100.0, 100 * 50.5, 1)
    workload = Workload(np.array([0.0, prefill * 0.5]), np.array([100, 100]), np.array([5, 5]))
    result = simulate(replica, workload)
    decodes = [step_time(coef, 2, 2 * (101 + j), 0, 0.0, 0.0, 2) for j in range(4)]
    assert result.first_token_s[0] == pytest.approx(prefill)
    assert result.first_token_s[1] == pytest.approx(2 * prefill)
    assert result.finish_s[0] == pytest.approx(2 * prefill + sum(decodes))
    assert result.finish_s[1] == pytest.approx(2 * prefill + sum(decodes))
    mixed = simulate(llama_replica(max_num_seqs=256, max_num_batched_tokens=8192), workload)
    first_mixed = step_time(coef, 1, 101, 100, 100.0, 100 * 50.5, 2)
    assert mixed.first_token_s[1] == pytest.approx(prefill + first_mixed)


def test_it_refuses_prefill_first_with_chunked_prefill() -> None:
    with pytest.raises(ConfigError, match="prefill_first: V0's prefill-first"):
        SchedulerConfig(prefill_first=True)


@pytest.mark.parametrize(
    ("version", "max_model_len", "mla", "expected"),
    [
        (None, None, False, (1024, 8192, True, False)),
        ((0, 13), None, False, (1024, 8192, True, False)),
        ((0, 8), None, False, (256, 2048, True, False)),
        ((0, 6), 131072, False, (256, 512, True, False)),
        ((0, 6), 8192, False, (256, 8192, False, True)),
        ((0, 7), 163840, True, (256, 163840, False, True)),
    ],
)
def test_it_takes_vllm_scheduler_defaults_by_release(
    version: tuple[int, int] | None,
    max_model_len: int | None,
    mla: bool,
    expected: tuple[int, int, bool, bool],
) -> None:
    scheduler = vllm_default_scheduler(H100, version=version, max_model_len=max_model_len, mla=mla)
    assert (
        scheduler.max_num_seqs,
        scheduler.max_num_batched_tokens,
        scheduler.enable_chunked_prefill,
        scheduler.prefill_first,
    ) == expected


def two_apart_with_one_prompt(prompt: int) -> Workload:
    """Two lone requests 10 s apart with the same prompt (512-token blocks, as Mooncake)."""
    blocks = -(-prompt // 512)
    return Workload(
        np.array([0.0, 10.0]),
        np.array([prompt, prompt]),
        np.array([3, 3]),
        prefix=PrefixBlocks.from_lists(512, [list(range(blocks)), list(range(blocks))]),
    )


def test_it_skips_the_prefill_of_cached_prompt_blocks() -> None:
    replica = llama_replica()
    coef = replica.step_model.coef
    on = simulate(replica, two_apart_with_one_prompt(1024))
    off = simulate(
        replace(replica, scheduler=replace(replica.scheduler, enable_prefix_caching=False)),
        two_apart_with_one_prompt(1024),
    )
    full = step_time(coef, 0, 0, 1024, 1024.0, 1024 * 512.5, 1)
    # the second request finds both 512-token blocks; vLLM recomputes the last token, so
    # 1023 tokens rounded down to the 16-token KV block: 1008 cached, a 16-token prefill
    # whose attention still reads the 1008 cached tokens
    rest = step_time(coef, 0, 0, 16, 1024.0, 16 * (1008 + 8.5), 1)
    ttft_on = on.first_token_s - on.send_s
    ttft_off = off.first_token_s - off.send_s
    assert ttft_on[0] == pytest.approx(full)
    assert ttft_off.tolist() == pytest.approx([full, full])
    assert ttft_on[1] == pytest.approx(rest)
    assert ttft_off[1] - ttft_on[1] == pytest.approx(full - rest)
    # decode is untouched: same KV context either way
    assert on.finish_s[1] - on.first_token_s[1] == pytest.approx(
        off.finish_s[1] - off.first_token_s[1]
    )
    assert on.flops_per_device < off.flops_per_device


def test_it_caches_nothing_without_block_hashes() -> None:
    replica = llama_replica()
    hashed = two_apart_with_one_prompt(1024)
    plain = Workload(hashed.arrival_s, hashed.prompt_tokens, hashed.output_tokens)
    assert simulate(replica, plain).first_token_s.tolist() == (
        simulate(
            replace(replica, scheduler=replace(replica.scheduler, enable_prefix_caching=False)),
            hashed,
        ).first_token_s.tolist()
    )


def test_it_turns_prefix_caching_off_in_v0_defaults() -> None:
    assert vllm_default_scheduler(H100).enable_prefix_caching
    assert not vllm_default_scheduler(H100, version=(0, 6)).enable_prefix_caching
    assert vllm_default_scheduler(H100).as_vllm_args()["enable_prefix_caching"] is True


def test_it_charges_a_host_load_as_the_prefill_tokens_it_takes_as_long_as() -> None:
    # Llama-3-8B bf16: 131072 KV bytes per token; 100 tokens over 25 GB/s take 524.288 us,
    # 26.2 prefill tokens at 20 us each: 27 charged; 1000 tokens: 262.1 -> 263. A link so
    # slow that recomputing is cheaper charges at most the loaded tokens.
    tokens = np.array([0, 100, 1000], np.int64)
    charged = host_load_tokens(
        tokens, kv_bytes_per_token_per_gpu=131072.0, prefill_s_per_token=2e-5
    )
    assert charged.tolist() == [0, 27, 263]
    slow = host_load_tokens(tokens, kv_bytes_per_token_per_gpu=131072.0, prefill_s_per_token=1e-7)
    assert slow.tolist() == [0, 100, 1000]


def test_host_offload_keeps_a_prefix_the_gpu_evicted() -> None:
    # tiny-llama with 1 MiB of KV: 1024 tokens (64 16-token blocks) on the GPU, 1024 more in
    # 1 MiB of host memory (1024 bytes per token). P (40 blocks) then Q (40 blocks) push P's
    # last 16 blocks to the host; P again finds 24 blocks on the GPU and 16 in the host tier:
    # 640 tokens cached, 256 of them loaded (256 x 1024 B / 25 GB/s = 10.49 us, 8.2 prefill
    # tokens of 1.279 us: 9 charged). Without offload only the 24 GPU blocks hit.
    rows = [list(range(40)), list(range(100, 140)), list(range(40))]
    workload = Workload(
        np.array([0.0, 1.0, 2.0]),
        np.full(3, 641, np.int64),
        np.full(3, 2, np.int64),
        prefix=PrefixBlocks.from_lists(16, rows),
    )
    scheduler = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=2048)
    plain = tiny_replica(1024**2, scheduler)
    offload = tiny_replica(1024**2, replace(scheduler, kv_offload_bytes=1024**2))
    assert host_capacity_tokens(offload) == 1024
    assert prefill_s_per_token(offload) == pytest.approx(1.2787512e-6, rel=1e-6)
    assert prefix_hits_on(offload, workload).host_tokens.tolist() == [0, 0, 256]
    assert prefix_cached_tokens_on(offload, workload).tolist() == [0, 0, 631]
    assert prefix_cached_tokens_on(plain, workload).tolist() == [0, 0, 384]
    ttft_offload = simulate(offload, workload).ttft_s
    ttft_plain = simulate(plain, workload).ttft_s
    assert ttft_offload[2] < ttft_plain[2]
    assert ttft_offload[:2].tolist() == ttft_plain[:2].tolist()


def test_it_rejects_a_negative_offload_and_passes_it_to_vllm_in_gib() -> None:
    with pytest.raises(ConfigError, match="kv_offload_bytes: must be an integer >= 0, got -1"):
        SchedulerConfig(kv_offload_bytes=-1)
    args = SchedulerConfig(kv_offload_bytes=8 * 1024**3).as_vllm_args()
    assert args["kv_offloading_size"] == 8.0
    assert "kv_offloading_size" not in SchedulerConfig().as_vllm_args()
