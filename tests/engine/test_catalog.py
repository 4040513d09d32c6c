"""Catalog: hardware, model architectures (built-in and config.json) and quantization schemes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.engine.cases import read_cases
from advisor.engine.catalog import (
    DEFAULT_CATALOG,
    GIB,
    MIB,
    CatalogError,
    kv_dtype_bytes,
    model_from_hf_config,
    model_from_hf_dict,
    resolve_model,
)

PUBLIC_CASES = Path(__file__).parents[2] / "advisor" / "engine" / "data" / "public_cases.csv"

LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
    "vocab_size": 128256,
}
MIXTRAL_CONFIG = {
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "vocab_size": 32000,
}


@pytest.mark.parametrize(
    ("name", "total_params"),
    [
        # exact counts published on each model card / safetensors index
        ("Llama-3-8B", 8_030_261_248),
        ("Llama-3.1-70B", 70_553_706_496),
        ("Llama-2-7B", 6_738_415_616),
        ("Llama-2-70B", 68_976_648_192),
        ("Qwen2.5-7B", 7_615_616_512),
        ("Qwen2.5-72B", 72_706_203_648),
        ("Mixtral-8x7B", 46_702_792_704),
        ("Llama-3.1-405B", 405_853_388_800),
    ],
)
def test_it_counts_parameters_from_the_architecture(name: str, total_params: int) -> None:
    assert DEFAULT_CATALOG.model(name).total_params == total_params


def test_it_counts_moe_active_parameters() -> None:
    mixtral = DEFAULT_CATALOG.model("Mixtral-8x7B")
    # per layer: attention 41,951,232 + 2 experts x 176,160,768 + router 32,768
    per_layer = 41_951_232 + 2 * 176_160_768 + 4096 * 8
    assert mixtral.active_params == 32 * per_layer + 2 * 32000 * 4096 + 4096
    assert mixtral.active_params == pytest.approx(12.9e9, rel=0.005)


@pytest.mark.parametrize(
    ("name", "kv_dtype", "bytes_per_token"),
    [
        ("Llama-3-8B", "bf16", 131_072),  # 2 x 32 layers x 8 heads x 128 x 2 bytes = 128 KiB
        ("Llama-3-70B", "bf16", 327_680),  # 320 KiB
        ("Llama-3-8B", "fp8", 65_536),  # FP8 halves it
        ("Llama-2-7B", "auto", 524_288),  # no GQA: 32 KV heads
        ("Qwen2.5-7B", "bf16", 57_344),
    ],
)
def test_it_computes_kv_bytes_per_token(name: str, kv_dtype: str, bytes_per_token: int) -> None:
    model = DEFAULT_CATALOG.model(name)
    assert model.kv_bytes_per_token(kv_dtype_bytes(kv_dtype)) == bytes_per_token


def test_it_finds_entries_by_alias_ignoring_case_and_org() -> None:
    assert DEFAULT_CATALOG.gpu("h100").name == "H100-SXM"
    assert DEFAULT_CATALOG.gpu("A100 80GB SXM").name == "A100-80GB"
    assert DEFAULT_CATALOG.model("meta-llama/Llama-3.1-8B-Instruct").name == "Llama-3-8B"
    assert DEFAULT_CATALOG.quant("AWQ").name == "awq-int4"


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda: DEFAULT_CATALOG.gpu("RTX-9090"), "gpu: unknown 'RTX-9090'; known: A100-40GB"),
        (lambda: DEFAULT_CATALOG.model("GPT-5"), "model: unknown 'GPT-5'"),
        (lambda: DEFAULT_CATALOG.quant("int3"), "weight_dtype: unknown 'int3'"),
        (lambda: kv_dtype_bytes("int2"), "kv_dtype: unknown 'int2'"),
    ],
)
def test_it_names_the_field_of_an_unknown_entry(lookup: object, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        lookup()  # type: ignore[operator]


def test_it_lists_every_required_gpu_with_sources() -> None:
    names = {gpu.name for gpu in DEFAULT_CATALOG.gpus}
    assert {
        "A100-40GB",
        "A100-80GB",
        "H100-SXM",
        "H100-PCIe",
        "H200-SXM",
        "L4",
        "L40S",
        "A10G",
        "B200",
    } <= names
    for gpu in DEFAULT_CATALOG.gpus:
        assert gpu.spec_source
        assert gpu.price_source
        assert gpu.price_usd_per_hour > 0
    h100 = DEFAULT_CATALOG.gpu("H100-SXM")
    assert h100.bandwidth_bytes_per_s == 3.35e12
    assert h100.peak_flops_per_s("fp8") == 1979e12
    # no FP8 tensor cores on A100: FP8 weights compute in BF16
    assert DEFAULT_CATALOG.gpu("A100-80GB").peak_flops_per_s("fp8") == 312e12


def test_it_describes_quantization_schemes() -> None:
    awq = DEFAULT_CATALOG.quant("awq-int4")
    assert awq.weight_bytes_per_param == pytest.approx((4 + 16 / 128 + 4 / 128) / 8)
    assert awq.compute == "bf16"
    assert not awq.quantizes_embeddings
    assert DEFAULT_CATALOG.quant("int8").compute == "int8"
    assert DEFAULT_CATALOG.quant("gguf-q8_0").weight_bits == 8.5
    for scheme in DEFAULT_CATALOG.schemes:
        assert scheme.quality_source


def test_it_reads_a_hugging_face_config_json(tmp_path: Path) -> None:
    path = tmp_path / "Meta-Llama-3-8B" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(LLAMA3_8B_CONFIG))
    model = model_from_hf_config(path)
    assert model.name == "Meta-Llama-3-8B"
    assert model.total_params == 8_030_261_248
    assert model.head_dim == 128
    assert resolve_model(str(path.parent)).total_params == 8_030_261_248


def test_it_reads_moe_fields_from_config() -> None:
    model = model_from_hf_dict(MIXTRAL_CONFIG, name="mixtral")
    assert (model.num_experts, model.experts_per_token) == (8, 2)
    assert model.total_params == DEFAULT_CATALOG.model("Mixtral-8x7B").total_params


def test_it_reads_the_tiny_model_config() -> None:
    tiny = model_from_hf_dict(
        {
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "vocab_size": 507,
            "tie_word_embeddings": False,
        },
        name="tiny-llama",
    )
    assert tiny.total_params == DEFAULT_CATALOG.model("tiny-llama").total_params == 1_440_512


def test_it_names_a_missing_config_field(tmp_path: Path) -> None:
    broken = dict(LLAMA3_8B_CONFIG)
    del broken["num_hidden_layers"]
    with pytest.raises(CatalogError, match="missing num_hidden_layers"):
        model_from_hf_dict(broken, name="x")
    with pytest.raises(CatalogError, match="hidden_size must be a positive integer"):
        model_from_hf_dict({**LLAMA3_8B_CONFIG, "hidden_size": "big"}, name="x")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        model_from_hf_config(bad)
    with pytest.raises(CatalogError, match=r"no config\.json"):
        model_from_hf_config(tmp_path / "absent" / "config.json")


def test_it_overrides_prices_without_touching_the_default() -> None:
    mine = DEFAULT_CATALOG.with_price("L4", 0.5, "our contract 2026")
    assert mine.gpu("L4").price_usd_per_hour == 0.5
    assert DEFAULT_CATALOG.gpu("L4").price_usd_per_hour == 0.68
    with pytest.raises(CatalogError, match="price_usd_per_hour"):
        DEFAULT_CATALOG.with_price("L4", -1.0, "x")


def test_it_gives_real_memory_sizes() -> None:
    assert DEFAULT_CATALOG.gpu("A100-80GB").memory_bytes == 80 * GIB
    assert DEFAULT_CATALOG.gpu("H200-SXM").memory_bytes / GIB == pytest.approx(140.4, abs=0.1)


@pytest.mark.parametrize(
    ("name", "bits", "compute", "vllm"),
    [
        ("mxfp4", 4 + 8 / 32, "bf16", "mxfp4"),  # E2M1 + an E8M0 scale per 32
        ("nvfp4", 4 + 8 / 16, "bf16", "modelopt_fp4"),  # E2M1 + an E4M3 scale per 16
        ("w4a16", 4 + 16 / 128, "bf16", "compressed-tensors"),  # int4 + BF16 scale per 128
        ("fp8-block", 8 + 32 / (128 * 128), "fp8", "fp8"),  # FP32 scale per 128 x 128
        ("fp8-per-channel", 8.0, "fp8", "compressed-tensors"),
    ],
)
def test_it_describes_the_formats_checkpoints_ship_in(
    name: str, bits: float, compute: str, vllm: str
) -> None:
    scheme = DEFAULT_CATALOG.quant(name)
    assert (scheme.weight_bits, scheme.compute, scheme.vllm_quantization) == (bits, compute, vllm)
    assert not scheme.quantizes_embeddings
    assert scheme.quality_source


def test_it_takes_mxfp4_as_a_weight_dtype() -> None:
    # "weight_dtype: unknown 'mxfp4'" made gpt-oss cases unmodellable
    assert DEFAULT_CATALOG.quant("MXFP4").name == "mxfp4"
    assert DEFAULT_CATALOG.quant("fp8_block").name == "fp8-block"


@pytest.mark.parametrize(
    ("name", "memory_bytes", "bandwidth", "bf16", "fp8", "int8", "link"),
    [
        # memory as the device reports it (rocm-smi / nvidia-smi); dense peaks; link one way
        ("MI300X", 192 * GIB, 5.3e12, 1307.4e12, 2614.9e12, 2614.9e12, 448e9),
        ("MI325X", 256 * GIB, 6.0e12, 1307.4e12, 2614.9e12, 2614.9e12, 448e9),
        ("MI355X", 288 * GIB, 8.0e12, 2516.6e12, 5033.2e12, 5033.2e12, 537.6e9),
        ("H20", 97871 * MIB, 4.0e12, 148e12, 296e12, 296e12, 450e9),
        ("H20-3e", 143771 * MIB, 4.8e12, 148e12, 296e12, 296e12, 450e9),
        ("RTX-PRO-6000-SE", 97887 * MIB, 1.597e12, 480e12, 960e12, 960e12, 64e9),
        ("B300", 275040 * MIB, 8.0e12, 2250e12, 4500e12, None, 900e9),
        ("GB200", 189471 * MIB, 8.0e12, 2500e12, 5000e12, 5000e12, 900e9),
    ],
)
def test_it_knows_the_gpus_fleets_buy_now(
    name: str,
    memory_bytes: int,
    bandwidth: float,
    bf16: float,
    fp8: float,
    int8: float | None,
    link: float,
) -> None:
    gpu = DEFAULT_CATALOG.gpu(name)
    assert gpu.kind == "gpu"
    assert gpu.memory_bytes == memory_bytes
    assert gpu.bandwidth_bytes_per_s == bandwidth
    assert gpu.bf16_flops_per_s == pytest.approx(bf16, rel=1e-12)
    assert gpu.fp8_flops_per_s == pytest.approx(fp8, rel=1e-12)
    assert gpu.int8_ops_per_s == (None if int8 is None else pytest.approx(int8, rel=1e-12))
    assert gpu.link_bytes_per_s == pytest.approx(link, rel=1e-12)
    assert gpu.price_usd_per_hour > 0
    assert "http" in gpu.spec_source or name.startswith("H20")
    assert gpu.price_source


def test_it_costs_b300_int8_at_the_bf16_peak() -> None:
    # Blackwell Ultra cut its INT8 tensor rate and NVIDIA's figures disagree: no INT8 peak
    b300 = DEFAULT_CATALOG.gpu("B300")
    assert b300.peak_flops_per_s("int8") == b300.peak_flops_per_s("bf16") == 2250e12


@pytest.mark.parametrize(
    ("reported", "name"),
    [
        # NVML / amd-smi names with the vendor word gpu_kind_of drops ("NVIDIA") removed
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI325X", "MI325X"),
        ("AMD Instinct MI355X", "MI355X"),
        ("H20", "H20"),
        ("H20-3e", "H20-3e"),
        ("RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000-SE"),
        ("B300", "B300"),  # "B300 SXM6 AC" by gpu_kind_of's shorter prefixes
        ("GB200", "GB200"),
    ],
)
def test_it_finds_new_gpus_by_their_reported_names(reported: str, name: str) -> None:
    assert DEFAULT_CATALOG.gpu(reported).name == name


def test_it_does_not_take_the_workstation_rtx_pro_6000_for_the_server_edition() -> None:
    # the Workstation Edition has 1792 GB/s, not the Server Edition's 1597
    with pytest.raises(CatalogError, match="unknown 'RTX PRO 6000 Blackwell Workstation"):
        DEFAULT_CATALOG.gpu("RTX PRO 6000 Blackwell Workstation Edition")


def test_it_resolves_every_gpu_of_the_public_cases() -> None:
    # MI300X, H20 and H20-3e rows were unmodellable ("gpu: unknown") before issue 15
    kinds = {case.gpu for case in read_cases(PUBLIC_CASES)}
    assert {"MI300X", "H20", "H20-3e"} <= kinds
    assert {kind: DEFAULT_CATALOG.gpu(kind).name for kind in kinds} == {
        kind: kind for kind in kinds
    }
