"""Step-time model: memory plan, rooflines, TP communication and overheads, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.engine import _simcore
from advisor.engine.catalog import DEFAULT_CATALOG, MIB
from advisor.engine.perf import (
    C_ATTN_FLOPS_PER_PAIR,
    C_BYTES_DENSE,
    C_BYTES_EXPERTS,
    C_KV_BYTES_PER_CTX,
    C_PRE_ATTN_FLOP_S_PER_PAIR,
    CalibrationProfile,
    ConfigError,
    Deployment,
    StepModel,
    coefficients,
    memory_plan,
    routed_fraction,
    step_time,
    weight_bytes,
)

IDEAL = CalibrationProfile(
    bw_efficiency=1.0,
    compute_efficiency=1.0,
    step_overhead_s=0.0,
    allreduce_latency_s=0.0,
)
H100 = DEFAULT_CATALOG.gpu("H100-SXM")
LLAMA8 = DEFAULT_CATALOG.model("Llama-3-8B")
LLAMA70 = DEFAULT_CATALOG.model("Llama-3-70B")
BF16 = DEFAULT_CATALOG.quant("bf16")


def llama8_h100(**changes: object) -> Deployment:
    return Deployment(H100, LLAMA8, BF16, **changes)  # type: ignore[arg-type]


def test_it_sizes_weights_per_precision() -> None:
    assert weight_bytes(LLAMA8, BF16) == 16_060_522_496  # 8,030,261,248 x 2
    # AWQ keeps the embedding and the LM head in BF16
    embed = 2 * 128256 * 4096
    body = 8_030_261_248 - embed
    awq = DEFAULT_CATALOG.quant("awq-int4")
    assert weight_bytes(LLAMA8, awq) == pytest.approx(body * (4 + 20 / 128) / 8 + embed * 2)


def test_it_plans_memory_like_vllm() -> None:
    plan = memory_plan(llama8_h100(), max_num_batched_tokens=8192, max_num_seqs=1024)
    usable = 81559 * MIB * 0.9
    workspace = 2**30 + 8192 * (6 * 4096 + 2 * 14336) * 2 + 1024 * 128256 * 4
    assert plan.usable_bytes_per_gpu == pytest.approx(usable)
    assert plan.workspace_bytes_per_gpu == workspace == 2_471_493_632
    assert plan.kv_capacity_tokens == int((usable - 16_060_522_496 - workspace) // 131_072)
    assert plan.kv_capacity_tokens == 445_836


def test_it_splits_weights_and_kv_heads_over_tensor_parallel() -> None:
    plan = memory_plan(
        Deployment(H100, LLAMA70, BF16, tensor_parallel=4),
        max_num_batched_tokens=2048,
        max_num_seqs=256,
    )
    assert plan.weight_bytes_per_gpu == 141_107_412_992 / 4
    assert plan.kv_bytes_per_token_per_gpu == 327_680 / 4
    # 8 KV heads over TP 16 replicate to one head per device
    big = memory_plan(
        Deployment(DEFAULT_CATALOG.gpu("B200"), LLAMA70, BF16, tensor_parallel=16),
        max_num_batched_tokens=2048,
        max_num_seqs=256,
    )
    assert big.kv_bytes_per_token_per_gpu == 2 * 80 * 1 * 128 * 2


def test_it_uses_the_fixed_kv_space_of_a_cpu_node() -> None:
    cpu = Deployment(
        DEFAULT_CATALOG.gpu("CPU-DEV-2C"),
        DEFAULT_CATALOG.model("tiny-llama"),
        BF16,
        kv_cache_bytes=2**30,
    )
    plan = memory_plan(cpu, max_num_batched_tokens=2048, max_num_seqs=128)
    # vLLM's log for the same node: "CPU KV cache size: 1,048,576 tokens"
    assert plan.kv_capacity_tokens == 1_048_576


def test_it_times_a_memory_bound_decode_step() -> None:
    model = StepModel(llama8_h100(), IDEAL)
    streamed = 16_060_522_496 - 128256 * 4096 * 2  # the embedding table is only gathered
    expected = (streamed + 131_072 * 1001) / 3.35e12
    assert model.step_time_s(n_decode=1, decode_context_tokens=1001) == pytest.approx(expected)
    assert expected == pytest.approx(4.5197e-3, rel=1e-4)


def test_it_times_a_compute_bound_step() -> None:
    model = StepModel(llama8_h100(), IDEAL)
    matmul_flops = 2 * (8_030_261_248 - 128256 * 4096) * 4096
    # 4096 prefill tokens of one fresh prompt: causal pairs n (n + 1) / 2
    pairs = 4096 * 4097 / 2
    attention = 4 * 32 * 32 * 128 * pairs / 989e12
    expected = matmul_flops / 989e12 + attention
    got = model.step_time_s(
        n_decode=0,
        decode_context_tokens=0,
        prefill_tokens=4096,
        prefill_context_tokens=4096,
        prefill_pairs=pairs,
        n_prefill_seqs=1,
    )
    assert got == pytest.approx(expected)


def test_it_adds_tensor_parallel_all_reduces() -> None:
    profile = CalibrationProfile(
        bw_efficiency=1.0, compute_efficiency=1.0, step_overhead_s=0.0, allreduce_latency_s=1e-5
    )
    tp4 = StepModel(Deployment(H100, LLAMA70, BF16, tensor_parallel=4), profile)
    no_comm = StepModel(
        Deployment(H100, LLAMA70, BF16, tensor_parallel=4),
        CalibrationProfile(
            bw_efficiency=1.0, compute_efficiency=1.0, step_overhead_s=0.0, allreduce_latency_s=0.0
        ),
    )
    batch = 64
    with_comm = tp4.step_time_s(n_decode=batch, decode_context_tokens=batch * 100)
    without = no_comm.step_time_s(n_decode=batch, decode_context_tokens=batch * 100)
    assert with_comm - without == pytest.approx(2 * 80 * 1e-5)  # two all-reduces per layer
    # ring all-reduce volume 2 (TP-1)/TP x tokens x hidden x 2 bytes over 450 GB/s NVLink
    per_token = 2 * 80 * 2 * 3 / 4 * 8192 * 2 / 450e9
    assert tp4.coef[_simcore.C_COMM_S_PER_TOKEN] == pytest.approx(per_token)
    single = StepModel(Deployment(H100, LLAMA8, BF16), profile)
    assert single.coef[_simcore.C_COMM_FIXED_S] == 0.0


def test_it_overlaps_host_and_device_time() -> None:
    def step(overlap: float) -> float:
        profile = CalibrationProfile(
            bw_efficiency=1.0,
            compute_efficiency=1.0,
            step_overhead_s=2e-3,
            seq_overhead_s=1e-5,
            overlap=overlap,
        )
        return StepModel(llama8_h100(), profile).step_time_s(n_decode=10, decode_context_tokens=10)

    device = step(0.0) - 2e-3 - 10 * 1e-5
    assert step(1.0) == pytest.approx(max(device, 2.1e-3))
    assert step(0.5) == pytest.approx(device + 2.1e-3 - 0.5 * min(device, 2.1e-3))


def test_it_routes_moe_tokens_to_a_growing_share_of_experts() -> None:
    assert routed_fraction(8, 2, 1) == 0.25
    assert routed_fraction(8, 2, 2) == pytest.approx(1 - 0.75**2)
    assert routed_fraction(8, 2, 1000) == pytest.approx(1.0)
    mixtral = StepModel(
        Deployment(H100, DEFAULT_CATALOG.model("Mixtral-8x7B"), BF16, tensor_parallel=2), IDEAL
    )
    one = mixtral.step_time_s(n_decode=1, decode_context_tokens=1)
    many = mixtral.step_time_s(n_decode=16, decode_context_tokens=16)
    assert many > one * 2  # batch 16 touches all 8 experts, batch 1 only 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tensor_parallel": 3}, "tensor_parallel: 3 does not divide the 32 attention heads"),
        ({"tensor_parallel": 0}, "tensor_parallel: must be an integer >= 1"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"kv_dtype": "int3"}, "kv_dtype: unknown"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"reference_context_tokens": 0}, "reference_context_tokens: must be an integer >= 1"),
    ],
)
def test_it_rejects_impossible_deployments(changes: dict[str, object], message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        llama8_h100(**changes)


def test_it_says_when_a_model_does_not_fit() -> None:
    a100 = DEFAULT_CATALOG.gpu("A100-80GB")
    with pytest.raises(ConfigError, match="does not fit"):
        Deployment(a100, LLAMA70, BF16)
    assert Deployment(a100, LLAMA70, BF16, tensor_parallel=2).tensor_parallel == 2
    # INT4 AWQ makes the 70B fit on one A100-80GB
    Deployment(a100, LLAMA70, DEFAULT_CATALOG.quant("awq-int4"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bw_efficiency", 0.0),
        ("compute_efficiency", 1.2),
        ("overlap", -0.1),
        ("step_overhead_s", -1.0),
    ],
)
def test_it_rejects_out_of_range_profiles(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"profile.{field}"):
        CalibrationProfile(**{field: value})  # type: ignore[arg-type]


def test_it_round_trips_a_profile_through_a_dict() -> None:
    profile = CalibrationProfile(hardware="L4", engine="vllm", bw_efficiency=0.7, fit_points=3)
    assert CalibrationProfile.from_dict(profile.to_dict()) == profile
    with pytest.raises(ConfigError, match="unknown field"):
        CalibrationProfile.from_dict({"speed": 1.0})


@settings(max_examples=200, deadline=None)
@given(
    n_decode=st.integers(0, 512),
    ctx=st.floats(0, 1e6),
    pre=st.integers(0, 8192),
    pre_ctx=st.floats(0, 1e5),
    pairs=st.floats(0, 1e8),
    overlap=st.floats(0, 1),
    tp=st.sampled_from([2, 4, 8]),
)
def test_it_compiles_the_same_formula(
    n_decode: int, ctx: float, pre: int, pre_ctx: float, pairs: float, overlap: float, tp: int
) -> None:
    profile = CalibrationProfile(step_overhead_s=1e-3, seq_overhead_s=2e-5, overlap=overlap)
    coef = StepModel(
        Deployment(H100, DEFAULT_CATALOG.model("Mixtral-8x7B"), BF16, tensor_parallel=tp), profile
    ).coef
    args = (float(n_decode), ctx, float(pre), pre_ctx, pairs, float(n_decode + 1))
    assert _simcore.step_time(coef, *args) == pytest.approx(step_time(coef, *args), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    batch=st.integers(1, 300),
    ctx=st.integers(0, 100_000),
    k=st.integers(1, 400),
    overlap=st.floats(0, 1),
    host_s=st.floats(0, 0.05),
)
def test_it_sums_decode_runs_in_closed_form(
    batch: int, ctx: int, k: int, overlap: float, host_s: float
) -> None:
    profile = CalibrationProfile(step_overhead_s=host_s, seq_overhead_s=1e-5, overlap=overlap)
    coef = StepModel(llama8_h100(), profile).coef
    steps = [step_time(coef, batch, ctx + batch + batch * j, 0, 0.0, 0.0, batch) for j in range(k)]
    d0, slope, host, ov = _simcore._run_shape(coef, batch, ctx)
    assert _simcore.run_time(d0, slope, host, ov, k) == pytest.approx(sum(steps), rel=1e-9)
    horizon = float(np.cumsum(steps)[k // 2])
    reached = _simcore.steps_to_reach(d0, slope, host, ov, horizon, k)
    # the smallest number of steps whose total reaches the horizon
    assert sum(steps[:reached]) >= horizon * (1 - 1e-12)
    assert reached == 1 or sum(steps[: reached - 1]) < horizon * (1 + 1e-12)


# --- models read from config.json: own weight format, per-layer KV ------------------------------

GPT_OSS = DEFAULT_CATALOG.model("openai/gpt-oss-120b")
DEEPSEEK_V3 = DEFAULT_CATALOG.model("deepseek-ai/DeepSeek-V3")
QWEN3_NEXT = DEFAULT_CATALOG.model("Qwen3-Next-80B-A3B-Thinking")
H200 = DEFAULT_CATALOG.gpu("H200-SXM")


def test_it_sizes_a_quantized_checkpoint_by_its_own_format() -> None:
    mxfp4 = DEFAULT_CATALOG.quant("mxfp4")
    # MXFP4 experts + BF16 rest (see test_architecture): the checkpoint's 65.2 GB, whatever
    # scheme the deployment names
    assert weight_bytes(GPT_OSS, mxfp4) == weight_bytes(GPT_OSS, BF16) == 65_248_815_744
    assert Deployment(H100, GPT_OSS, mxfp4).compute == "bf16"
    # DeepSeek-V3 ships FP8 blocks: its matmuls run at the FP8 peak
    v3 = Deployment(H200, DEEPSEEK_V3, BF16, "fp8", 8)
    assert v3.compute == "fp8"
    assert StepModel(v3, IDEAL).peak_flops_per_s == 1979e12


def test_it_plans_kv_per_layer_kind_at_the_reference_context() -> None:
    plan = memory_plan(Deployment(H100, GPT_OSS, BF16), max_num_batched_tokens=2048, max_num_seqs=1)
    # 18 full layers x 2,048 B per token, + 18 sliding layers holding 128 tokens of 2,048 B
    # spread over the 4,096-token reference context: 36,864 + 18 x 2,048 x 128 / 4,096
    assert plan.reference_context_tokens == 4096
    assert plan.kv_bytes_per_token_per_gpu == 36_864 + 1_152 == 38_016
    kv_space = plan.usable_bytes_per_gpu - plan.weight_bytes_per_gpu - plan.workspace_bytes_per_gpu
    assert plan.kv_capacity_tokens == int(kv_space // 38_016)
    # at a 128-token context the sliding layers hold every token: twice the full layers' KV
    short = Deployment(H100, GPT_OSS, BF16, reference_context_tokens=128)
    assert (
        memory_plan(short, max_num_batched_tokens=2048, max_num_seqs=1).kv_bytes_per_token_per_gpu
        == 73_728
    )


def test_it_counts_linear_attention_state_and_replicated_mla_latents() -> None:
    hybrid = Deployment(H100, QWEN3_NEXT, BF16, tensor_parallel=4)
    plan = memory_plan(hybrid, max_num_batched_tokens=2048, max_num_seqs=1)
    # 12 full layers x 2 x 1 KV head per device (2 heads over 4, replicated) x 256 x 2 B
    # = 12,288; the 39,518,208 B of linear state split over 4 devices, per 4,096 tokens: 2,412
    assert plan.kv_bytes_per_token_per_gpu == 12_288 + 2_412
    v3 = Deployment(H200, DEEPSEEK_V3, BF16, "fp8", 8)
    # the MLA latent is not split over TP: 61 x (512 + 64) x 1 B on every device
    assert (
        memory_plan(v3, max_num_batched_tokens=2048, max_num_seqs=1).kv_bytes_per_token_per_gpu
        == 35_136
    )


def test_it_streams_dense_first_layers_and_shared_experts_every_step() -> None:
    v3 = Deployment(H200, DEEPSEEK_V3, BF16, "fp8", 8)
    coef = coefficients(v3, IDEAL)
    by_group = DEEPSEEK_V3.weight_bytes_by_group(BF16)
    # only the routed experts scale with the routed fraction
    assert coef[C_BYTES_EXPERTS] == by_group["experts"] / 8
    # dense MLPs of the first 3 layers, shared experts, attention, routers, norms, LM head
    streamed = sum(by_group.values()) - by_group["embeddings"] - by_group["experts"]
    assert coef[C_BYTES_DENSE] == pytest.approx(streamed / 8, rel=1e-12)
    assert coef[C_KV_BYTES_PER_CTX] == 35_136
    # absorbed MLA decode: 61 x 278,528 FLOPs per pair, heads split over 8 devices
    assert coef[C_ATTN_FLOPS_PER_PAIR] == 61 * 278_528 / 8


def test_it_reads_only_the_top_k_latents_of_a_sparse_attention_layer() -> None:
    v32 = Deployment(H200, DEFAULT_CATALOG.model("DeepSeek-V3.2"), BF16, "fp8", 8)
    # held: 61 x (656 + 132) B per token, on every device: fp8 maps to vLLM's fp8_ds_mla
    # record (512 fp8 latent + 4 fp32 scales + 64 BF16 rope = 656 B) and the index key cache
    assert (
        memory_plan(v32, max_num_batched_tokens=2048, max_num_seqs=1).kv_bytes_per_token_per_gpu
        == 61 * (656 + 132)
        == 48_068
    )
    coef = coefficients(v32, IDEAL)
    # read per context token at 4,096: every index key (61 x 132) + 2,048 of 4,096 latents
    assert coef[C_KV_BYTES_PER_CTX] == 61 * 132 + 61 * 656 * 2048 / 4096 == 28_060
    # index scores 2 x 64 x 128 per pair over all tokens + absorbed MLA over the top 2,048
    assert coef[C_ATTN_FLOPS_PER_PAIR] == (61 * 16_384 + 61 * 278_528 * 2048 / 4096) / 8


@pytest.mark.parametrize(
    ("kv_dtype", "bytes_per_token"),
    [("auto", 61 * (656 + 132)), ("fp8", 61 * (656 + 132)), ("bfloat16", 61 * (1152 + 132))],
)
def test_a_sparse_mla_layer_packs_its_latent_unless_told_16_bit(
    kv_dtype: str, bytes_per_token: int
) -> None:
    v32 = Deployment(H200, DEFAULT_CATALOG.model("DeepSeek-V3.2"), BF16, kv_dtype, 8)
    assert v32.kv_bytes_per_token == bytes_per_token
    plan = memory_plan(v32, max_num_batched_tokens=2048, max_num_seqs=1)
    assert plan.kv_bytes_per_token_per_gpu == bytes_per_token
    # DeepSeek-V3 (dense MLA) keeps 576 elements at the dtype's width whatever the name
    v3 = Deployment(H200, DEFAULT_CATALOG.model("DeepSeek-V3"), BF16, kv_dtype, 8)
    assert v3.kv_bytes_per_token == 61 * 576 * (1 if kv_dtype == "fp8" else 2)


def test_it_folds_sliding_attention_flops_at_the_reference_context() -> None:
    coef = coefficients(Deployment(H100, GPT_OSS, BF16), IDEAL)
    # per layer 2 x 64 heads x (64 + 64) = 16,384 FLOPs per pair; 18 full layers attend to
    # the whole context, 18 sliding ones to 128 of the 4,096 reference tokens
    assert coef[C_ATTN_FLOPS_PER_PAIR] == 18 * 16_384 + 18 * 16_384 * 128 / 4096 == 304_128
    # prefill: a sliding layer's causal pairs of a 4,096-token prompt, 128 x 129 / 2
    # + 3,968 x 128, over the full layer's 4,096 x 4,097 / 2
    sliding_share = (128 * 129 / 2 + 3968 * 128) / (4096 * 4097 / 2)
    expected = (18 * 16_384 + 18 * 16_384 * sliding_share) / 989e12
    assert coef[C_PRE_ATTN_FLOP_S_PER_PAIR] == pytest.approx(expected, rel=1e-12)
