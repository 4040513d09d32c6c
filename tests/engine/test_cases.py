"""Published cases: the optional columns, config.json models, workloads and per-split errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from advisor.engine.cases import (
    CASE_COLUMNS,
    OPTIONAL_COLUMNS,
    Case,
    CaseError,
    CasePrediction,
    ValidationReport,
    case_model,
    case_setup,
    case_workload,
    metric_value,
    predict_case,
    read_cases,
    release_version,
    sharegpt_lengths,
    validate_cases,
)
from advisor.engine.profiles import DEFAULT_PROFILES
from advisor.engine.results import Percentiles, ServingMetrics, Slo
from advisor.engine.sim import simulate

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "advisor" / "engine" / "data" / "public_cases.csv"
OLD_ROW = {
    **dict.fromkeys(CASE_COLUMNS, ""),
    "id": "a",
    "source": "src",
    "engine": "vllm",
    "gpu": "H100-SXM",
    "num_gpus": "1",
    "tp": "1",
    "model": "Llama-3-8B",
    "weight_dtype": "bf16",
    "kv_dtype": "bf16",
    "input_len": "1024",
    "output_len": "128",
    "concurrency": "8",
    "metric": "output_tok_s",
    "value": "900",
}
# a small Llama-shaped config (the fields `model_from_hf_dict` reads)
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 8192,
}


def write_cases(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row.get(name, "") for name in columns})
    return path


def new_row(**changes: str) -> dict[str, str]:
    return {**OLD_ROW, **changes}


ALL_COLUMNS = (*CASE_COLUMNS, *OPTIONAL_COLUMNS)


def test_it_reads_a_file_of_the_original_columns_with_blank_options(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", [OLD_ROW], CASE_COLUMNS)
    (case,) = read_cases(path)
    assert case.split is None
    assert case.num_prompts is None
    assert case.request_rate_rps is None
    assert case.input_len_min is None
    assert case.output_len_max is None
    assert case.model_config is None
    assert (case.source_url, case.engine_version, case.date) == ("", "", "")


def test_it_reads_the_optional_columns(tmp_path: Path) -> None:
    row = new_row(
        source_url="https://example.org/run",
        engine_version="0.13.0",
        date="2026-01-02",
        split="TEST",
        num_prompts="640",
        request_rate="2.5",
        dataset="random",
        input_len_min="819",
        output_len_min="102",
        output_len_max="128",
        ep="2",
        dp="1",
        max_model_len="32768",
        gpu_memory_utilization="0.95",
    )
    (case,) = read_cases(write_cases(tmp_path / "cases.csv", [row], ALL_COLUMNS))
    assert case.source_url == "https://example.org/run"
    assert case.engine_version == "0.13.0"
    assert case.date == "2026-01-02"
    assert case.split == "test"
    assert case.num_prompts == 640
    assert case.request_rate_rps == 2.5
    assert case.dataset == "random"
    assert (case.input_len_min, case.input_len_max) == (819, None)
    assert (case.output_len_min, case.output_len_max) == (102, 128)
    assert (case.ep, case.dp) == (2, 1)
    assert (case.max_model_len, case.gpu_memory_utilization) == (32768, 0.95)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split": "dev"}, "line 2 (case a): field split must be one of ['train', 'test']"),
        ({"num_prompts": "0"}, "line 2 (case a): field num_prompts must be >= 1, got 0"),
        ({"request_rate": "fast"}, "field request_rate must be a number, got 'fast'"),
        ({"request_rate": "-1"}, "field request_rate must be a positive number, got '-1'"),
        ({"input_len_min": "2000"}, "field input_len_min (2000) exceeds input_len_max (1024)"),
        ({"output_len_max": "64"}, "field output_len_min (128) exceeds output_len_max (64)"),
        ({"input_len": "", "input_len_min": "10"}, "field input_len_min/input_len_max need"),
        ({"ep": "x"}, "field ep must be an integer, got 'x'"),
        ({"max_model_len": "0"}, "field max_model_len must be >= 1, got 0"),
        ({"gpu_memory_utilization": "1.5"}, "field gpu_memory_utilization must be in (0, 1]"),
        ({"model": "configs/absent.json"}, "field model: no config.json at"),
    ],
)
def test_it_names_the_line_and_field_of_a_bad_optional_value(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    path = write_cases(tmp_path / "cases.csv", [new_row(**changes)], ALL_COLUMNS)
    with pytest.raises(CaseError) as error:
        read_cases(path)
    assert message in str(error.value)


def test_it_reads_a_model_config_path_relative_to_the_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (data / "configs").mkdir(parents=True)
    (data / "configs" / "org--tiny.json").write_text(json.dumps(TINY_CONFIG))
    path = write_cases(data / "cases.csv", [new_row(model="configs/org--tiny.json")], CASE_COLUMNS)
    monkeypatch.chdir(tmp_path)  # the path is relative to the CSV, not the working directory
    (case,) = read_cases(path)
    assert case.model_config == data / "configs" / "org--tiny.json"
    model = case_model(case)
    assert model.name == "org--tiny"
    assert (model.num_layers, model.hidden_size, model.num_kv_heads) == (4, 1024, 2)
    setup = case_setup(case, DEFAULT_PROFILES)
    assert setup.replica.deployment.model.name == "org--tiny"


def case_of(**changes: object) -> Case:
    base: dict[str, object] = {
        "id": "a", "source": "s", "engine": "vllm", "gpu": "H100-SXM", "num_gpus": 1,
        "tp": 1, "model": "Llama-3-8B", "weight_dtype": "bf16", "kv_dtype": "bf16",
        "input_len": 1024, "output_len": 128, "concurrency": 8, "metric": "output_tok_s",
        "value": 1.0,
    }  # fmt: skip
    return Case(**{**base, **changes})  # type: ignore[arg-type]


def test_it_sends_num_prompts_at_once_at_concurrency_max() -> None:
    workload, note = case_workload(case_of(concurrency=None, num_prompts=40), 1024, 128)
    assert workload.num_requests == 40
    assert workload.max_concurrency == 40
    assert np.all(workload.arrival_s == 0.0)
    assert note == "40 requests at once"


def test_it_keeps_the_default_request_counts_when_num_prompts_is_blank() -> None:
    offline, note = case_workload(case_of(concurrency=None), 1024, 128)
    closed, _ = case_workload(case_of(concurrency=8), 1024, 128)
    assert (offline.num_requests, offline.max_concurrency) == (2000, 2000)
    assert note == "2000 requests at once (default count)"
    assert (closed.num_requests, closed.max_concurrency) == (64, 8)


def test_it_sends_requests_as_a_poisson_process_at_the_request_rate() -> None:
    capped, note = case_workload(case_of(num_prompts=2000, request_rate_rps=4.0), 100, 10)
    open_loop = case_of(concurrency=None, num_prompts=10, request_rate_rps=4.0)
    uncapped, _ = case_workload(open_loop, 100, 10)
    gaps = np.diff(capped.arrival_s)
    assert capped.arrival_s[0] == 0.0
    assert np.all(gaps >= 0.0)
    assert abs(float(gaps.mean()) - 0.25) < 0.02  # mean gap 1/rate over 1999 draws
    assert capped.max_concurrency == 8
    assert uncapped.max_concurrency is None
    assert note == "2000 requests Poisson at 4 req/s, at most 8 in flight"


def test_it_draws_lengths_uniformly_within_the_spread_and_repeatably() -> None:
    case = case_of(num_prompts=2000, input_len_min=819, output_len_min=102)
    first, _ = case_workload(case, 1024, 128)
    again, _ = case_workload(case, 1024, 128)
    assert (int(first.prompt_tokens.min()), int(first.prompt_tokens.max())) == (819, 1024)
    assert (int(first.output_tokens.min()), int(first.output_tokens.max())) == (102, 128)
    assert np.array_equal(first.prompt_tokens, again.prompt_tokens)
    fixed, _ = case_workload(case_of(num_prompts=5), 1024, 128)
    assert fixed.prompt_tokens.tolist() == [1024] * 5


def test_it_draws_sharegpt_lengths_skewed_around_the_published_means() -> None:
    prompt, output = sharegpt_lengths(np.random.default_rng(0), 1000, 215, 122)
    assert (float(prompt.mean()), float(output.mean())) == pytest.approx((215, 122), abs=0.5)
    # skewed like the dataset: the median is about half the mean
    assert (float(np.median(prompt)), float(np.median(output))) == (120.0, 62.0)
    # vLLM's benchmark filter: 4 <= prompt <= 1024, output >= 4, prompt + output <= 2048
    assert (int(prompt.min()), int(prompt.max()), int(output.min())) == (4, 1024, 4)
    assert int((prompt + output).max()) == 2048


def test_it_gives_a_sharegpt_case_without_bounds_its_skewed_lengths() -> None:
    case = case_of(dataset="sharegpt", input_len=215, output_len=122, num_prompts=1000)
    workload, _ = case_workload(case, 215, 122)
    assert float(np.median(workload.output_tokens)) == 62.0
    bounded = case_of(dataset="sharegpt", output_len_min=100, output_len_max=144)
    workload, _ = case_workload(bounded, 1024, 122)
    assert int(workload.output_tokens.min()) >= 100


def test_it_refuses_a_spread_longer_than_the_context() -> None:
    case = case_of(input_len=8000, input_len_max=9000, output_len=128)
    with pytest.raises(Exception, match="input_len \\+ output_len = 9128 exceeds max_model_len"):
        case_setup(case, DEFAULT_PROFILES)


def metrics_with(output_tok_s: float, ttft: Percentiles) -> ServingMetrics:
    flat = Percentiles(0.02, 0.01, 0.03, 0.04, 0.05)
    return ServingMetrics(
        policy="fcfs", num_requests=10, completed=10, rejected=0, duration_s=5.0,
        request_throughput_rps=2.0, output_throughput_tok_s=output_tok_s,
        total_throughput_tok_s=3 * output_tok_s, ttft_s=ttft, tpot_s=flat, itl_s=flat,
        e2e_s=flat, busy_fraction=1.0, mbu=0.5, mfu=0.1, kv_usage_mean=0.5,
        kv_usage_peak=0.9, kv_capacity_tokens=1000, preemptions=0, num_steps=10, slo=Slo(),
        slo_attainment=1.0, goodput_rps=2.0, num_devices=1, price_usd_per_device_hour=1.0,
        cost_usd=1.0, cost_usd_per_1m_output_tokens=1.0,
    )  # fmt: skip


def test_it_divides_per_gpu_throughput_by_all_gpus_and_reports_means() -> None:
    metrics = metrics_with(1000.0, Percentiles(0.3, 0.2, 0.4, 0.5, 0.6))
    assert metric_value(metrics, "output_tok_s", 2) == 2000.0
    assert metric_value(metrics, "output_tok_s_per_gpu", 2, 4) == 250.0
    assert metric_value(metrics, "total_tok_s_per_gpu", 2, 4) == 750.0
    assert metric_value(metrics, "mean_ttft_ms", 2) == 300.0
    assert metric_value(metrics, "median_ttft_ms", 2) == 200.0


def test_it_reports_the_median_error_per_split_and_metric() -> None:
    report = ValidationReport(
        (
            CasePrediction(case_of(id="a", split="train", value=100.0), 110.0),
            CasePrediction(case_of(id="b", split="train", value=100.0), 130.0),
            CasePrediction(case_of(id="c", split="train", value=100.0), None, "no"),
            CasePrediction(case_of(id="d", split="test", value=100.0), 50.0),
            CasePrediction(case_of(id="e", split="test", metric="median_ttft_ms"), None, "no"),
            CasePrediction(case_of(id="f"), 100.0),
        )
    )
    groups = {(g.split, g.metric): g for g in report.groups()}
    assert [(g.split, g.metric) for g in report.groups()] == [
        ("train", "output_tok_s"),
        ("test", "output_tok_s"),
        ("test", "median_ttft_ms"),
        ("none", "output_tok_s"),
    ]
    train = groups[("train", "output_tok_s")]
    assert (train.cases, train.unmodellable) == (3, 1)
    assert train.median_ape == pytest.approx(0.3)
    assert train.median_ape_modelled == pytest.approx(0.2)
    assert groups[("test", "output_tok_s")].median_ape == pytest.approx(0.5)
    assert groups[("test", "median_ttft_ms")].median_ape == math.inf
    assert math.isnan(groups[("test", "median_ttft_ms")].median_ape_modelled)


def test_it_reports_the_median_error_per_metric_family_of_a_split() -> None:
    report = ValidationReport(
        (
            CasePrediction(case_of(id="a", split="test", value=100.0), 110.0),
            CasePrediction(case_of(id="b", split="test", metric="req_s", value=10.0), 13.0),
            CasePrediction(case_of(id="c", split="test", metric="median_tpot_ms"), None, "no"),
            CasePrediction(case_of(id="d", split="test", metric="mean_ttft_ms", value=2.0), 1.0),
            CasePrediction(case_of(id="e", split="train", value=100.0), 100.0),
        )
    )
    assert report.family_medians("test") == pytest.approx(
        {"throughput": 0.2, "tpot": math.inf, "ttft": 0.5}
    )
    assert report.family_medians("train") == {"throughput": 0.0}
    assert (report.unmodellable_count("test"), report.unmodellable_count("train")) == (1, 0)


def test_it_gives_every_source_one_vote_in_the_balanced_median() -> None:
    big = [
        CasePrediction(case_of(id=f"big{i}", split="test", source="big", value=100.0), 101.0)
        for i in range(5)
    ]
    report = ValidationReport(
        (
            *big,
            CasePrediction(case_of(id="s1", split="test", source="one", value=100.0), 150.0),
            CasePrediction(case_of(id="s2", split="test", source="two", value=100.0), 140.0),
            CasePrediction(
                case_of(id="t", split="test", source="two", metric="median_tpot_ms", value=10.0),
                12.0,
            ),
            CasePrediction(case_of(id="x", split="train", source="one", value=100.0), 300.0),
        )
    )
    assert report.family_medians("test")["throughput"] == pytest.approx(0.01)
    by_source = report.source_family_medians("test")
    assert sorted(by_source) == ["big", "one", "two"]
    assert by_source["big"] == pytest.approx({"throughput": 0.01})
    assert by_source["one"] == pytest.approx({"throughput": 0.5})
    assert by_source["two"] == pytest.approx({"throughput": 0.4, "tpot": 0.2})
    assert report.balanced_family_medians("test") == pytest.approx({"throughput": 0.4, "tpot": 0.2})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.7.4.dev181+gf35f8e22", (0, 7)),
        ("v0.13.0", (0, 13)),
        ("main at PR #23151 (2025-08-19)", None),
        ("nightly (2025-12-04)", None),
        ("", None),
    ],
)
def test_it_reads_the_release_of_an_engine_version(
    text: str, expected: tuple[int, int] | None
) -> None:
    assert release_version(text) == expected


def test_it_sizes_the_server_by_its_stated_max_model_len_and_memory_share() -> None:
    # DeepSeek-R1 on vLLM 0.7 (V0, MLA: never chunked prefill): a step holds max_model_len
    # tokens, the model's 163,840 by default, 32,768 as the dstack runs set it
    base = {
        "model": "configs/deepseek-ai--DeepSeek-R1.json", "gpu": "H200-SXM", "num_gpus": 8,
        "tp": 8, "weight_dtype": "fp8-block", "engine_version": "0.7.4",
        "model_config": PUBLIC.parent / "configs" / "deepseek-ai--DeepSeek-R1.json",
    }  # fmt: skip
    default = case_setup(case_of(**base), DEFAULT_PROFILES)
    stated = case_setup(
        case_of(**base, max_model_len=32768, gpu_memory_utilization=0.95), DEFAULT_PROFILES
    )
    assert default.replica.scheduler.max_num_batched_tokens == 163_840
    assert stated.replica.scheduler.max_num_batched_tokens == 32_768
    deployment = stated.replica.deployment
    assert (deployment.max_model_len, deployment.gpu_memory_utilization) == (32768, 0.95)
    assert default.replica.deployment.gpu_memory_utilization == 0.9


def test_it_models_a_pre_0_8_vllm_run_with_the_v0_engine_and_its_defaults() -> None:
    setup = case_setup(case_of(engine_version="0.6.3.post2"), DEFAULT_PROFILES)
    current = case_setup(case_of(engine_version="0.13.0"), DEFAULT_PROFILES)
    scheduler = setup.replica.scheduler
    assert (setup.engine_generation, current.engine_generation) == ("v0", "v1")
    # Llama-3-8B (8192 tokens) is no long-context model: V0 ran it without chunked prefill
    assert (scheduler.max_num_seqs, scheduler.max_num_batched_tokens) == (256, 8192)
    assert scheduler.prefill_first
    assert (current.replica.scheduler.max_num_seqs, current.replica.scheduler.prefill_first) == (
        1024,
        False,
    )
    profile = DEFAULT_PROFILES.lookup("H100-SXM", "vllm")
    assert setup.replica.profile.step_overhead_s == pytest.approx(
        profile.step_overhead_s + profile.v0_step_overhead_s
    )
    assert setup.replica.profile.seq_overhead_s == pytest.approx(
        profile.seq_overhead_s + profile.v0_seq_overhead_s
    )
    assert "vLLM V0 engine (0.6.3.post2): chunked prefill off" in setup.assumptions[0]


def test_it_folds_attention_at_the_case_context() -> None:
    setup = case_setup(case_of(input_len=3000, output_len=1000), DEFAULT_PROFILES)
    assert setup.replica.deployment.reference_context == 3500


# --- the shipped corpus (advisor/engine/data/public_cases.csv) --------------------------------

ORIGINAL_IDS = {
    "qwen7b-bf16-a100-b1", "qwen7b-awq-a100-b1", "qwen7b-gptq8-a100-b1",
    "qwen72b-bf16-a100x4-b1", "qwen72b-awq-a100x2-b1", "llama31-8b-h100-b1",
    "llama31-8b-fp8-h100-128", "llama31-8b-fp8-h100-1k", "llama31-8b-fp8-h100-2k128",
    "llama2-70b-h100x8-offline", "llama3-8b-h100-sharegpt",
}  # fmt: skip


def test_it_ships_a_public_corpus_of_the_required_breadth() -> None:
    cases = [case for case in read_cases(PUBLIC) if case.engine == "vllm"]
    publishers = {case.source.split(" ")[0] for case in cases}
    assert len(cases) == 482
    assert len({case.model for case in cases}) == 16
    assert len({case.gpu for case in cases}) == 8
    assert {"InferenceMAX", "dstack", "vLLM", "Qwen2.5", "silybench-data"} <= publishers
    moe = {case.model for case in cases if case.model_config and case_model(case).is_moe}
    # gpt-oss-20b/120b, DeepSeek-R1/V3.2, Qwen3-30B-A3B/235B, Nemotron-3, MiniMax-M2
    assert len(moe) == 8


def test_it_records_source_version_date_and_config_of_every_new_case() -> None:
    for case in read_cases(PUBLIC):
        if case.id in ORIGINAL_IDS:
            continue
        assert case.source_url.startswith("https://github.com/"), case.id
        assert case.engine_version, case.id
        assert len(case.date) == 10, case.id
        assert case.num_prompts is not None, case.id
        assert case.dataset in ("random", "sharegpt"), case.id
        assert case.model_config is not None, case.id


def test_it_splits_the_corpus_by_model_family_with_hard_regimes_in_both() -> None:
    # rule (SOURCE.md): the DeepSeek-V3 (MLA) and Qwen3 families are test, the rest train
    cases = read_cases(PUBLIC)
    for case in cases:
        family_test = any(name in case.model.lower() for name in ("deepseek", "qwen3"))
        assert case.split == ("test" if family_test else "train"), case.id
    for split in ("train", "test"):
        mine = [case for case in cases if case.split == split]
        assert any((case.input_len or 0) >= 30000 for case in mine), split
        bursts = [
            case for case in mine
            if case.model_config and case_model(case).is_moe
            and (case.concurrency or case.num_prompts or 0) >= 64
        ]  # fmt: skip
        assert bursts, split


def test_it_simulates_each_published_run_once_for_all_its_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    real = simulate

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("advisor.engine.cases.simulate", counted)
    run = [
        case_of(id="a-out", metric="output_tok_s"),
        case_of(id="a-ttft", metric="median_ttft_ms", notes="same run"),
        case_of(id="b-out", metric="output_tok_s", concurrency=16),
    ]
    together = validate_cases(run, DEFAULT_PROFILES)
    assert len(calls) == 2  # runs a and b
    alone = [predict_case(case, DEFAULT_PROFILES).predicted for case in run]
    assert [p.predicted for p in together.predictions] == alone
