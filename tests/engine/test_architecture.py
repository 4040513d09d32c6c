"""Per-layer architecture and weight formats read from real config.json files, checked by hand.

Each vendored config (advisor/engine/data/configs, sources in SOURCE.md) gets its KV bytes per
token (per layer kind; at a short and a long context where layers are windowed), its weight
bytes per tensor group and its parameter count against the published figure. The arithmetic
is written out next to each number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from advisor.engine.architecture import describe
from advisor.engine.catalog import (
    CONFIG_DIR,
    DEFAULT_CATALOG,
    CatalogError,
    ModelSpec,
    model_from_hf_config,
    model_from_hf_dict,
)

BF16 = DEFAULT_CATALOG.quant("bf16")


def load(stem: str) -> ModelSpec:
    return model_from_hf_config(CONFIG_DIR / f"{stem}.json")


def kinds(model: ModelSpec) -> dict[str, int]:
    counted: dict[str, int] = {}
    for layer in model.layers:
        counted[layer.attention.kind] = counted.get(layer.attention.kind, 0) + 1
    return counted


def weights(model: ModelSpec) -> dict[str, float]:
    return {k: v for k, v in model.weight_bytes_by_group(BF16).items() if v}


# --- dense GQA -------------------------------------------------------------------------------


def test_it_reads_llama_3_1_8b() -> None:
    model = load("meta-llama--Meta-Llama-3.1-8B")
    assert model.assumptions == ()
    assert model.weight_format is None
    assert kinds(model) == {"full": 32}
    # 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B
    assert model.kv_bytes_per_token(2.0) == 131_072
    assert model.kv_bytes_per_sequence(1000, 2.0) == 131_072_000
    # attention per layer: 4096 x (4096 + 2 x 1024) + 4096 x 4096 = 41,943,040; x 32
    # MLP: 3 x 4096 x 14336 x 32; embeddings and untied LM head 128256 x 4096 each, at 2 B
    assert weights(model) == {
        "attention": 41_943_040 * 32 * 2.0,
        "dense_mlp": 3 * 4096 * 14336 * 32 * 2.0,
        "norms": (2 * 4096 * 32 + 4096) * 2.0,
        "embeddings": 128256 * 4096 * 2.0,
        "lm_head": 128256 * 4096 * 2.0,
    }
    assert model.total_params == 8_030_261_248  # the safetensors total


def test_it_reads_qwen3_32b_with_qk_norm() -> None:
    model = load("Qwen--Qwen3-32B")
    # 2 x 64 layers x 8 KV heads x 128 x 2 B = 262,144 B
    assert model.kv_bytes_per_token(2.0) == 262_144
    # per layer: q 5120 x 8192, k and v 5120 x 1024, o 8192 x 5120 = 94,371,840 matrix
    # + q_norm and k_norm (128 each) = 256 vector; x 64 layers
    assert model.group_params["attention"].matrix == 94_371_840 * 64
    assert model.group_params["attention"].vector == 256 * 64
    assert weights(model)["dense_mlp"] == 3 * 5120 * 25600 * 64 * 2.0
    assert model.total_params == 32_762_123_264
    assert model.total_params == pytest.approx(32.8e9, rel=0.005)  # model card: 32.8B


def test_it_reads_qwen3_8b() -> None:
    model = load("Qwen--Qwen3-8B")
    assert model.assumptions == ()
    assert kinds(model) == {"full": 36}
    # 2 x 36 layers x 8 KV heads x 128 x 2 B = 147,456 B
    assert model.kv_bytes_per_token(2.0) == 147_456
    # per layer: q 4096 x 4096, k and v 4096 x 1024, o 4096 x 4096 = 41,943,040 matrix
    # + q_norm and k_norm (128 each) = 256 vector; x 36 layers
    assert model.group_params["attention"].matrix == 41_943_040 * 36
    assert model.group_params["attention"].vector == 256 * 36
    assert weights(model)["dense_mlp"] == 3 * 4096 * 12288 * 36 * 2.0
    # + untied embeddings and LM head 151936 x 4096 each + norms 2 x 4096 x 36 + 4096
    assert model.total_params == 1_509_958_656 + 5_435_817_984 + 1_244_659_712 + 299_008
    assert model.total_params == pytest.approx(8.2e9, rel=0.005)  # model card: 8.2B


# --- MoE ---------------------------------------------------------------------------------------


def test_it_reads_qwen3_30b_a3b() -> None:
    model = load("Qwen--Qwen3-30B-A3B")
    assert (model.num_experts, model.experts_per_token) == (128, 8)
    assert all(layer.mlp.kind == "moe" for layer in model.layers)  # decoder_sparse_step 1
    # 2 x 48 x 4 KV heads x 128 x 2 B = 98,304 B
    assert model.kv_bytes_per_token(2.0) == 98_304
    # experts: 48 layers x 128 x 3 x 2048 x 768 = 28,991,029,248 params, at 2 B
    # router: 48 x 2048 x 128 = 12,582,912
    assert weights(model)["experts"] == 28_991_029_248 * 2.0
    assert weights(model)["router"] == 12_582_912 * 2.0
    # per layer: attention 18,874,368 + 256 (q/k norm) + 128 experts x 4,718,592
    # + router 262,144 + norms 4,096 = 623,120,640; x 48 + 2 x 311,164,928 + 2,048
    assert model.total_params == 30_532_122_624
    # active: 8 of 128 experts: 56,889,600 per layer x 48 + 622,329,856 + 2,048
    assert model.active_params == 3_353_032_704
    assert model.active_group_params["experts"].matrix == 48 * 8 * 3 * 2048 * 768
    assert model.active_group_params["attention"] == model.group_params["attention"]
    assert model.total_params == pytest.approx(30.5e9, rel=0.005)  # card: 30.5B total
    assert model.active_params == pytest.approx(3.3e9, rel=0.02)  # card: 3.3B activated


def test_it_reads_deepseek_v3_mla_dense_first_and_shared_experts() -> None:
    model = load("deepseek-ai--DeepSeek-V3")
    assert kinds(model) == {"mla": 61}
    assert [layer.mlp.kind for layer in model.layers[:4]] == ["dense", "dense", "dense", "moe"]
    moe = model.layers[3].mlp
    assert (moe.num_experts, moe.experts_per_token, moe.shared_intermediate_size) == (256, 8, 2048)
    # vLLM caches the latent: 61 layers x (512 + 64) x 1 B (fp8 KV) = 35,136 B
    assert model.kv_bytes_per_token(1.0) == 35_136
    assert model.kv_bytes_per_token(2.0) == 70_272
    # MLA per layer: q_a 7168 x 1536 + q_b 1536 x 128 x 192 + kv_a 7168 x 576
    # + kv_b 512 x 128 x 256 + o 16384 x 7168 = 187,105,280
    assert model.group_params["attention"].matrix == 187_105_280 * 61
    # decode (absorbed): 128 heads x 2 x ((512 + 64) + 512) = 278,528 FLOPs per pair
    # prefill (expanded): 128 x 2 x (192 + 128) = 81,920
    mla = model.layers[0].attention
    assert (mla.decode_flops_per_pair, mla.prefill_flops_per_pair) == (278_528, 81_920)
    # 3 dense layers x 583,483,392 + 58 MoE layers x 11,507,286,272 + 2 x 926,679,040 + 7,168
    assert model.total_params == 671_026_419_200
    assert model.total_params == pytest.approx(671e9, rel=0.001)  # published, without MTP
    assert model.active_params == pytest.approx(37e9, rel=0.02)  # published: 37B activated
    assert model.assumptions == (
        "1 multi-token-prediction layer(s) not counted (vLLM loads them only for speculative "
        "decoding)",
    )


def test_it_sizes_deepseek_v3_fp8_block_weights() -> None:
    model = load("deepseek-ai--DeepSeek-V3")
    fmt = model.weight_format
    assert fmt is not None
    assert (fmt.scheme, fmt.compute, fmt.bits_per_weight) == ("fp8-block", "fp8", 8 + 32 / 16384)
    # fp8 + one FP32 scale per 128 x 128 block: 8.001953125 bits = 1 + 1/4096 bytes per weight
    by_group = weights(model)
    assert by_group["attention"] == 11_413_422_080 * (1 + 1 / 4096) + 124_928 * 2
    # experts: 58 MoE layers x 256 x 3 x 7168 x 2048 = 653,908,770,816 params
    assert by_group["experts"] == 653_908_770_816 * (1 + 1 / 4096)
    # dense-first MLPs: 3 x 3 x 7168 x 18432; shared experts: 58 x 3 x 7168 x 2048
    assert by_group["dense_mlp"] == 3 * 3 * 7168 * 18432 * (1 + 1 / 4096)
    assert by_group["shared_experts"] == 58 * 3 * 7168 * 2048 * (1 + 1 / 4096)
    # the router (and its score-correction bias), embeddings and LM head stay BF16
    assert by_group["router"] == (58 * 7168 * 256 + 58 * 256) * 2.0
    assert by_group["embeddings"] == by_group["lm_head"] == 129280 * 7168 * 2.0


def test_it_reads_deepseek_v3_2_sparse_attention() -> None:
    model = load("deepseek-ai--DeepSeek-V3.2")
    mla = model.layers[0].attention
    assert (mla.sparse_topk, mla.index_bytes_per_token) == (2048, 132)
    # every token keeps its latent and its index key (128 fp8 + one fp32 scale = 132 B):
    # 61 x (576 x 1 B + 132 B) = 43,188 B per token with fp8 KV
    assert model.kv_bytes_per_token(1.0) == 61 * (576 + 132) == 43_188
    # a query attends to the top 2,048 tokens only
    assert mla.attended_keys(100_000) == 2048
    assert mla.attended_keys(1000) == 1000
    # indexer per layer: wq_b 1536 x 64 x 128 + wk 7168 x 128 + weights_proj 7168 x 64,
    # k_norm 2 x 128, on top of V3's 671,026,419,200
    assert model.total_params == 671_026_419_200 + 61 * (13_959_168 + 256)
    assert model.assumptions == (
        "index_topk: the indexer's key cache taken as vLLM's (fp8 key + fp32 scale per 128); "
        "picking the top-k costs nothing beyond the index scores",
        "1 multi-token-prediction layer(s) not counted (vLLM loads them only for speculative "
        "decoding)",
    )


def test_it_reads_qwen3_next_hybrid_linear_attention() -> None:
    model = load("Qwen--Qwen3-Next-80B-A3B-Thinking")
    # full_attention_interval 4: layers 3, 7, ..., 47 full, the other 36 gated DeltaNet
    assert kinds(model) == {"linear": 36, "full": 12}
    assert model.layers[3].attention.kind == "full"
    # 12 full layers x 2 x 2 KV heads x 256 x 2 B = 24,576 B per token
    assert model.kv_bytes_per_token(2.0) == 24_576
    # linear state per layer: 32 value heads x 128 x 128 x 2 B (recurrent, bf16)
    # + conv (2 x 16 x 128 + 32 x 128 = 8192 channels) x (4 - 1) x 2 B = 1,097,728 B; x 36
    assert model.state_bytes_per_sequence == 36 * 1_097_728 == 39_518_208
    short = model.kv_bytes_by_kind(1000, 2.0)
    long = model.kv_bytes_by_kind(100_000, 2.0)
    assert short == {"linear": 39_518_208, "full": 24_576_000}
    assert long == {"linear": 39_518_208, "full": 2_457_600_000}  # the state does not grow
    # shared expert 3 x 2048 x 512 + its gate 2048, on all 48 layers
    assert model.group_params["shared_experts"].matrix == 48 * (3 * 2048 * 512 + 2048)
    assert model.total_params == 79_674_391_296
    assert model.total_params == pytest.approx(80e9, rel=0.01)  # card: 80B total
    assert model.active_params == pytest.approx(3.9e9, rel=0.01)  # 3B active + embeddings
    assert model.assumptions == (
        "linear-attention state held in bf16 (vLLM mamba_ssm_cache_dtype auto)",
    )


def test_it_reads_nemotron_h_hybrid_blocks() -> None:
    model = load("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    # hybrid_override_pattern: 52 single-type blocks, 23 Mamba-2 (M), 6 attention (*), 23 MoE
    # (E); each mixer is paired with the MoE block after it: 29 layers, 6 of them lone mixers
    assert model.num_layers == 29
    assert kinds(model) == {"linear": 23, "full": 6}
    assert sum(1 for layer in model.layers if layer.mlp.kind == "moe") == 23
    # only the 6 attention layers grow: 6 x 2 x 2 KV heads x 128 x 2 B = 6,144 B per token
    assert model.kv_bytes_per_token(2.0) == 6_144
    # Mamba-2 state per layer: 64 heads x 64 x 128 state x 4 B (mamba_ssm_cache_dtype
    # float32) + conv (4096 + 2 x 8 groups x 128 = 6144 channels) x (4 - 1) x 2 B
    assert model.state_bytes_per_sequence == 23 * (64 * 64 * 128 * 4 + 6144 * 3 * 2)
    groups = model.group_params
    # Mamba-2 in_proj 2688 x (2 x 4096 + 2 x 8 x 128 + 64) + out_proj 4096 x 2688, x 23;
    # attention q 2688 x 4096, k and v 2688 x 256, o 4096 x 2688, x 6
    mamba = 2688 * (2 * 4096 + 2 * 8 * 128 + 64) + 4096 * 2688
    assert groups["attention"].matrix == 23 * mamba + 6 * (2688 * (4096 + 512) + 4096 * 2688)
    # conv weights and bias 6144 x 5, dt_bias / A_log / D 3 x 64, gated norm 4096, x 23
    assert groups["attention"].vector == 23 * (6144 * 5 + 3 * 64 + 4096)
    # relu2 experts are not gated: 2 matrices; 23 x 128 x 2 x 2688 x 1856
    assert groups["experts"].matrix == 23 * 128 * 2 * 2688 * 1856
    # moe_shared_expert_intermediate_size 3712 (not n_shared_experts x 1856 gated)
    assert groups["shared_experts"].matrix == 23 * 2 * 2688 * 3712
    assert groups["norms"].vector == 52 * 2688 + 2688  # one norm per block, and the final one
    assert model.total_params == 31_577_937_344  # card: 31.6B total
    assert model.active_params == pytest.approx(3.58e9, rel=0.01)  # card: 3.6B incl. embeddings


def test_it_reads_minimax_m2_with_fp8_block_experts() -> None:
    model = load("MiniMaxAI--MiniMax-M2.5")
    assert kinds(model) == {"full": 62}
    # 62 x 2 x 8 KV heads x 128 x 2 B = 253,952 B per token
    assert model.kv_bytes_per_token(2.0) == 253_952
    fmt = model.weight_format
    assert fmt is not None
    assert fmt.scheme == "fp8-block"
    by_group = weights(model)
    # experts: 62 x 256 x 3 x 3072 x 1536 in fp8 with a scale per 128 x 128 block
    assert by_group["experts"] == 62 * 256 * 3 * 3072 * 1536 * (1 + 1 / 4096)
    # attention: 62 x (3072 x (6144 + 2 x 1024) + 6144 x 3072)
    assert by_group["attention"] == 62 * 44_040_192 * (1 + 1 / 4096)
    # the gate and its score-correction bias, and the LM head, are not converted
    assert by_group["router"] == 62 * (3072 * 256 + 256) * 2.0
    assert by_group["lm_head"] == 200064 * 3072 * 2.0
    assert model.total_params == pytest.approx(230e9, rel=0.01)  # card: 230B total


# --- sliding window, sinks, MXFP4 ------------------------------------------------------------


def test_it_reads_gpt_oss_120b_sliding_layers_and_mxfp4_experts() -> None:
    model = load("openai--gpt-oss-120b")
    assert kinds(model) == {"sliding": 18, "full": 18}
    assert model.layers[0].attention.window_tokens == 128
    assert model.layers[0].attention.sinks
    # growth per token: 18 full layers x 2 x 8 x 64 x 2 B = 36,864 B
    assert model.kv_bytes_per_token(2.0) == 36_864
    # a sliding layer holds min(context, 128) tokens: 18 x 2,048 B x 100 at 100 tokens ...
    assert model.kv_bytes_by_kind(100, 2.0) == {"sliding": 3_686_400, "full": 3_686_400}
    # ... and 18 x 2,048 B x 128 = 4,718,592 B however long the context grows
    assert model.kv_bytes_by_kind(100_000, 2.0) == {"sliding": 4_718_592, "full": 3_686_400_000}
    fmt = model.weight_format
    assert fmt is not None
    assert (fmt.scheme, fmt.bits_per_weight) == ("mxfp4", 4.25)
    by_group = weights(model)
    # experts: 36 x 128 x 3 x 2880 x 2880 = 114,661,785,600 at 4 + 8/32 bits, and their
    # biases 36 x 128 x (2 x 2880 + 2880) = 39,813,120 at 2 B
    assert by_group["experts"] == 114_661_785_600 * 4.25 / 8 + 39_813_120 * 2
    # attention, router, embeddings, LM head stay BF16 (modules_to_not_convert)
    assert by_group["attention"] == (955_514_880 + 290_304) * 2.0
    assert by_group["router"] == (36 * 2880 * 128 + 36 * 128) * 2.0
    assert sum(by_group.values()) == 65_248_815_744  # the checkpoint's 65.2 GB
    # OpenAI: 116.83B total, 5.13B active (their active figure leaves out the embedding)
    assert model.total_params == 116_829_156_672
    assert model.active_params - model.embedding_params == pytest.approx(5.13e9, rel=0.001)


def test_it_reads_gemma_3_through_its_multimodal_wrapper() -> None:
    model = load("google--gemma-3-27b-it")
    # sliding_window_pattern 6 (the default): every 6th layer global, 10 of 62
    assert kinds(model) == {"sliding": 52, "full": 10}
    assert model.tie_word_embeddings
    # per token and layer: 2 x 16 KV heads x 128 x 2 B = 8,192 B
    assert model.kv_bytes_per_token(2.0) == 10 * 8192  # only the global layers keep growing
    assert model.kv_bytes_by_kind(1000, 2.0) == {
        "sliding": 52 * 8192 * 1000,
        "full": 10 * 8192 * 1000,
    }
    assert model.kv_bytes_by_kind(100_000, 2.0) == {
        "sliding": 52 * 8192 * 1024,  # 436,207,616 B: the window
        "full": 10 * 8192 * 100_000,
    }
    # tied: one 262,208 x 5,376 table, no separate LM head
    assert weights(model)["embeddings"] == 262_208 * 5376 * 2.0
    assert "lm_head" not in weights(model)
    # 4 norms per layer (Gemma) + q/k norms in attention
    assert model.group_params["norms"].vector == 62 * 4 * 5376 + 5376
    assert model.total_params == pytest.approx(27.0e9, rel=0.01)  # text model of the 27B
    assert "vision_config: the encoder's weights are not counted (text model only)" in (
        model.assumptions
    )
    assert "vocab_size: absent; took gemma3_text's default 262208" in model.assumptions


def test_it_reads_llama_4_scout_chunked_attention_and_interleaved_moe() -> None:
    model = load("meta-llama--Llama-4-Scout-17B-16E-Instruct")
    # RoPE layers use chunked attention of 8192 tokens; every 4th (NoPE) layer is global
    assert kinds(model) == {"chunked": 36, "full": 12}
    assert model.layers[3].attention.kind == "full"
    # per token and layer: 2 x 8 x 128 x 2 B = 4,096 B
    assert model.kv_bytes_by_kind(1000, 2.0) == {
        "chunked": 36 * 4096 * 1000,
        "full": 12 * 4096 * 1000,
    }
    assert model.kv_bytes_by_kind(100_000, 2.0) == {
        "chunked": 36 * 4096 * 8192,  # 1,207,959,552 B: one chunk
        "full": 12 * 4096 * 100_000,
    }
    assert model.layers[0].attention.attended_keys(8193) == 1  # a new chunk starts
    moe = model.layers[0].mlp
    assert (moe.num_experts, moe.experts_per_token, moe.shared_intermediate_size) == (16, 1, 8192)
    # experts 48 x 16 x 3 x 5120 x 8192, shared 48 x 3 x 5120 x 8192
    assert weights(model)["experts"] == 48 * 16 * 3 * 5120 * 8192 * 2.0
    assert weights(model)["shared_experts"] == 48 * 3 * 5120 * 8192 * 2.0
    # published 109B total with the vision encoder, 17B active
    assert model.total_params == pytest.approx(109e9, rel=0.02)
    assert model.active_params == pytest.approx(17e9, rel=0.02)


# --- quantized checkpoints -----------------------------------------------------------------


def test_it_sizes_a_qwen3_fp8_block_checkpoint_with_modules_not_converted() -> None:
    model = load("Qwen--Qwen3-30B-A3B-FP8")
    assert model.total_params == load("Qwen--Qwen3-30B-A3B").total_params
    by_group = weights(model)
    # 905,969,664 attention weights at 1 + 1/4096 B, q/k norms at 2 B
    assert by_group["attention"] == 905_969_664 * (1 + 1 / 4096) + 12_288 * 2
    assert by_group["experts"] == 28_991_029_248 * (1 + 1 / 4096)
    # mlp.gate (the router) is listed in modules_to_not_convert: BF16
    assert by_group["router"] == 12_582_912 * 2.0
    assert by_group["lm_head"] == 151936 * 2048 * 2.0


def test_it_sizes_an_awq_checkpoint() -> None:
    model = load("Qwen--Qwen2.5-7B-Instruct-AWQ")
    fmt = model.weight_format
    assert fmt is not None
    assert (fmt.scheme, fmt.compute) == ("awq-int4", "bf16")
    # int4 + an FP16 scale and a 4-bit zero point per 128: 4 + 16/128 + 4/128 = 4.15625 bits
    assert fmt.bits_per_weight == 4.15625
    by_group = weights(model)
    # attention: 28 x 3584 x (3584 + 2 x 512 + 3584) = 822,083,584; q/k/v biases stay 16-bit
    assert by_group["attention"] == 822_083_584 * 4.15625 / 8 + 28 * 4608 * 2
    assert by_group["dense_mlp"] == 28 * 3 * 3584 * 18944 * 4.15625 / 8  # 2,962,993,152 B
    assert by_group["embeddings"] == by_group["lm_head"] == 152064 * 3584 * 2.0
    # sliding_window is set but use_sliding_window is false: every layer full attention
    assert kinds(model) == {"full": 28}
    assert model.kv_bytes_per_token(2.0) == 57_344


def test_it_sizes_the_qwen3_14b_awq_checkpoint() -> None:
    model = load("Qwen--Qwen3-14B-AWQ")
    by_group = weights(model)
    # attention: 40 x 5120 x (5120 + 2 x 1024 + 5120); the per-head q/k norms stay 16-bit
    assert by_group["attention"] == 40 * 62_914_560 * 4.15625 / 8 + 40 * 2 * 128 * 2
    assert by_group["dense_mlp"] == 40 * 3 * 5120 * 17408 * 4.15625 / 8
    assert by_group["lm_head"] == 151936 * 5120 * 2.0
    # 40 x 2 x 8 x 128 x 2 B = 163,840 B per token
    assert model.kv_bytes_per_token(2.0) == 163_840
    assert model.total_params == 14_768_307_200  # card: 14.8B


LLAMA_BODY: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "max_position_embeddings": 131072,
}


def with_quant(quantization_config: dict[str, Any]) -> ModelSpec:
    return model_from_hf_dict({**LLAMA_BODY, "quantization_config": quantization_config}, name="q")


def test_it_reads_compressed_tensors_w4a16_with_its_ignore_list() -> None:
    model = with_quant(
        {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                "strategy": "group", "group_size": 128},
                    "input_activations": None,
                }
            },
            "ignore": ["lm_head", "re:.*layers\\.0\\.self_attn.*"],
        }
    )  # fmt: skip
    fmt = model.weight_format
    assert fmt is not None
    assert (fmt.scheme, fmt.compute, fmt.bits_per_weight) == ("w4a16", "bf16", 4 + 16 / 128)
    by_group = weights(model)
    # layer 0's attention is ignored (BF16); the other 31 at 4.125 bits
    assert by_group["attention"] == 41_943_040 * 2.0 + 31 * 41_943_040 * 4.125 / 8
    assert by_group["dense_mlp"] == 32 * 3 * 4096 * 14336 * 4.125 / 8
    assert by_group["lm_head"] == 128256 * 4096 * 2.0


def test_it_applies_per_projection_targets_of_a_mixed_checkpoint() -> None:
    # int8 (group 64) attention and int4 (group 32) experts, named projection by projection
    # with regexes as in compressed-tensors mixed releases; layer 0's dense MLP untargeted
    model = model_from_hf_dict(
        {**LLAMA_BODY, "num_hidden_layers": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
         "first_k_dense_replace": 1,
         "quantization_config": {
             "quant_method": "compressed-tensors",
             "config_groups": {
                 "group_0": {
                     "targets": ["re:model\\.layers\\.\\d+\\.self_attn\\.(q|k|v|o)_proj$"],
                     "weights": {"num_bits": 8, "type": "int", "strategy": "group",
                                 "group_size": 64},
                 },
                 "group_1": {
                     "targets": [
                         "re:model\\.layers\\.\\d+\\.mlp\\.experts\\.\\d+\\.(gate|up|down)_proj$"
                     ],
                     "weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                 "group_size": 32},
                 },
             },
             # one projection of layer 1's attention only: the group stays quantized
             "ignore": ["lm_head", "model.layers.1.self_attn.o_proj"],
         }},
        name="mixed",
    )  # fmt: skip
    by_group = weights(model)
    # attention: 2 layers x 41,943,040 at 8 + 16/64 = 8.25 bits
    assert by_group["attention"] == 2 * 41_943_040 * 8.25 / 8
    # experts: 1 MoE layer x 4 x 3 x 4096 x 14336 at 4 + 16/32 = 4.5 bits
    assert by_group["experts"] == 4 * 3 * 4096 * 14336 * 4.5 / 8
    assert by_group["dense_mlp"] == 3 * 4096 * 14336 * 2.0  # no rule targets it


def test_it_reads_compressed_tensors_fp8_w8a8_as_fp8_compute() -> None:
    model = with_quant(
        {
            "quant_method": "compressed-tensors",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token"},
                }
            },
            "ignore": ["lm_head"],
        }
    )
    fmt = model.weight_format
    assert fmt is not None
    assert (fmt.scheme, fmt.compute, fmt.bits_per_weight) == ("fp8-per-channel", "fp8", 8.0)


def test_it_reads_modelopt_nvfp4_and_gptq() -> None:
    nvfp4 = with_quant(
        {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16,
         "exclude_modules": ["lm_head"], "kv_cache_quant_algo": "FP8"}
    )  # fmt: skip
    fmt = nvfp4.weight_format
    assert fmt is not None
    # E2M1 + an E4M3 scale per 16: 4 + 8/16 = 4.5 bits
    assert (fmt.scheme, fmt.bits_per_weight) == ("nvfp4", 4.5)
    assert weights(nvfp4)["dense_mlp"] == 32 * 3 * 4096 * 14336 * 4.5 / 8
    assert nvfp4.assumptions == (
        "quantization_config names a KV-cache scheme: KV bytes follow the deployment's kv_dtype",
        "nvfp4: no FP4 tensor-core peak in the catalog; matmuls counted at the BF16 peak",
    )
    gptq = with_quant({"quant_method": "gptq", "bits": 4, "group_size": 128, "lm_head": True})
    fmt = gptq.weight_format
    assert fmt is not None
    # GPTQ always stores 4-bit zero points: 4 + 16/128 + 4/128; lm_head quantized too
    assert (fmt.scheme, fmt.bits_per_weight) == ("gptq-int4", 4.15625)
    assert weights(gptq)["lm_head"] == 128256 * 4096 * 4.15625 / 8


# --- assumptions and errors ------------------------------------------------------------------


def test_it_lists_what_it_does_not_model_as_assumptions() -> None:
    odd = model_from_hf_dict(
        {**LLAMA_BODY, "num_hidden_layers": 2, "sliding_window": 64,
         "layer_types": ["full_attention", "hash_attention"],
         "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
        name="odd",
    )  # fmt: skip
    assert odd.assumptions == (
        "layer_types[1] 'hash_attention' not understood: counted as full attention",
        "quantization_config.quant_method 'bitsandbytes' not understood: weights counted at "
        "16 bits",
    )
    assert odd.weight_format is None
    assert kinds(odd) == {"full": 2}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layer_types": ["full_attention"]}, "layer_types must be a list of 32 entries"),
        ({"layer_types": ["sliding_attention"] * 32}, "sliding_window is missing"),
        ({"num_local_experts": 8}, "missing num_experts_per_tok"),
        ({"num_local_experts": 8, "num_experts_per_tok": 9}, "num_experts_per_tok 9 exceeds"),
        (
            {"n_routed_experts": 8, "num_experts_per_tok": 2, "moe_layer_freq": "every"},
            "moe_layer_freq must be a positive integer",
        ),
        (
            {"num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": "none"},
            "mlp_only_layers must be a list of integers",
        ),
        (
            {"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}},
            r"quantization_config\.weight_block_size not understood",
        ),
        (
            {"quantization_config": {"quant_method": "awq", "bits": "four"}},
            r"quantization_config\.bits not understood",
        ),
        ({"kv_lora_rank": 512}, "missing qk_rope_head_dim"),
        ({"hybrid_override_pattern": "M*"}, "hybrid_override_pattern must be a string of 32"),
        (
            {"hybrid_override_pattern": "MX" * 16, "mamba_num_heads": 8},
            r"hybrid_override_pattern has unknown block type\(s\) \['X'\]",
        ),
    ],
)
def test_it_names_the_field_of_a_malformed_config(change: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        model_from_hf_dict({**LLAMA_BODY, **change}, name="bad")


def test_it_finds_vendored_configs_by_name() -> None:
    model = DEFAULT_CATALOG.model("openai/gpt-oss-120b")
    assert model.name == "openai/gpt-oss-120b"
    assert model.source == "advisor/engine/data/configs/openai--gpt-oss-120b.json"
    assert DEFAULT_CATALOG.model("Qwen3-30B-A3B").num_experts == 128
    # a built-in name still wins over a vendored config of the same model
    assert DEFAULT_CATALOG.model("meta-llama/Llama-3.1-8B").name == "Llama-3-8B"


def test_it_keeps_every_vendored_config_readable() -> None:
    for path in sorted(Path(CONFIG_DIR).glob("*.json")):
        model = model_from_hf_config(path)
        assert model.total_params > 0, path.name


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        (
            "deepseek-ai--DeepSeek-V3",
            "MoE, 256 routed experts top-8 + 1 shared, 61 layers (3 dense first), "
            "MLA (kv_lora_rank 512 + rope 64), fp8 block weights",
        ),
        (
            "meta-llama--Meta-Llama-3.1-8B",
            "dense, 32 layers, full attention (GQA 32/8 heads x 128), "
            "16-bit weights (or the deployment's quantization)",
        ),
        (
            "google--gemma-3-27b-it",
            "dense, 62 layers, attention: full on 10 layers + sliding window 1024 on 52 layers "
            "(GQA 32/16 heads x 128), 16-bit weights (or the deployment's quantization)",
        ),
        (
            "Qwen--Qwen3-Next-80B-A3B-Thinking",
            "MoE, 512 routed experts top-10 + 1 shared, 48 layers, attention: full on 12 "
            "layers + linear on 36 layers (GQA 16/2 heads x 256), 16-bit weights (or the "
            "deployment's quantization)",
        ),
        (
            "openai--gpt-oss-20b",
            "MoE, 32 routed experts top-4, 24 layers, attention: full on 12 layers + sliding "
            "window 128 on 12 layers (GQA 64/8 heads x 64), mxfp4 experts (rest 16-bit)",
        ),
        (
            "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
            "MoE, 128 routed experts top-6 + 2 shared, 29 layers (6 without an MLP), attention: "
            "full on 6 layers + linear on 23 layers (GQA 32/2 heads x 128), 16-bit weights (or "
            "the deployment's quantization)",
        ),
        (
            "Qwen--Qwen2.5-7B-Instruct-AWQ",
            "dense, 28 layers, full attention (GQA 28/4 heads x 128), awq int4 weights",
        ),
    ],
)
def test_it_describes_what_it_read_in_one_line(stem: str, expected: str) -> None:
    assert describe(load(stem)) == expected
