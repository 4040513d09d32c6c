"""Scenario: the assessment input round-trips through JSON exactly; bad values name their field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advisor.engine.perf import CalibrationProfile
from advisor.engine.scenario import (
    AutoscalingSpec,
    DeploymentSpec,
    EngineArgs,
    GpuKindChoice,
    LoadShape,
    PriceEntry,
    QualityOverride,
    Scenario,
    ScenarioError,
    SloSpec,
    SpecDecodeCounters,
    SpeculativeSpec,
    WorkloadSpec,
    diurnal_load,
    load_scenario,
)
from advisor.engine.workload import PrefixBlocks, Workload, synthetic_workload

ROOT = Path(__file__).resolve().parents[2]


def _sample(seed: int = 0, n: int = 500) -> Workload:
    rng = np.random.default_rng(seed)
    return synthetic_workload(
        rng, num_requests=n, rate_rps=3.3, prompt_tokens=700, output_tokens=150, range_ratio=0.5
    )


def _scenario() -> Scenario:
    load = diurnal_load(
        np.random.default_rng(1), days=2, mean_rps=3.0, peak_to_trough=4.0, weekend_factor=0.5
    )
    first = DeploymentSpec(
        name="chat",
        model="Llama-3-8B",
        hardware="H100-SXM",
        workload=WorkloadSpec(_sample(), load, "test"),
        replicas=3,
        engine_args=EngineArgs(
            max_num_seqs=128,
            speculative_config=SpeculativeSpec("ngram", 3, prompt_lookup_max=4),
        ),
        slo=SloSpec(0.5, 0.05, 1.5, defaulted=("max_quality_loss_points",)),
        autoscaling=AutoscalingSpec(enabled=True, target=5.0, cold_start_s=95.5),
        spec_decode=SpecDecodeCounters("ngram", 3, 1000, 3000, 1234),
        quality_overrides={"awq-int4": QualityOverride(-0.7, "our eval 2026-01")},
    )
    second = DeploymentSpec(
        name="code",
        model="Qwen2.5-7B",
        hardware="L40S",
        workload=WorkloadSpec(_sample(2, 300)),
        weight_dtype="fp8",
    )
    return Scenario(
        deployments=(first, second),
        prices={"H100-SXM": PriceEntry(4.1, "sheet 2026-01")},
        profiles=(CalibrationProfile(hardware="L40S", engine="vllm", bw_efficiency=0.71),),
        name="t",
    )


def test_it_round_trips_exactly_through_json() -> None:
    scenario = _scenario()
    text = scenario.to_json()
    again = Scenario.from_json(text)
    assert again == scenario
    assert again.to_json() == text
    assert again.digest() == scenario.digest()
    assert again.deployments[0].workload.sample.arrival_s.tolist() == (
        scenario.deployments[0].workload.sample.arrival_s.tolist()
    )


def _with_prefix(scenario: Scenario) -> Scenario:
    """The first deployment's prompts over 512 tokens open with blocks 7 8, the others with 7."""
    first = scenario.deployments[0]
    sample = first.workload.sample
    rows = [[7, 8] if p > 512 else [7] for p in sample.prompt_tokens.tolist()]
    hashed = Workload(
        sample.arrival_s,
        sample.prompt_tokens,
        sample.output_tokens,
        None,
        sample.name,
        PrefixBlocks.from_lists(512, rows),
    )
    workload = replace(first.workload, sample=hashed)
    deployments = (replace(first, workload=workload), *scenario.deployments[1:])
    return replace(scenario, deployments=deployments)


def test_it_round_trips_the_samples_block_hashes() -> None:
    scenario = _with_prefix(_scenario())
    again = Scenario.from_json(scenario.to_json())
    assert again == scenario
    assert again != _scenario()
    assert again.digest() == scenario.digest()
    assert again.digest() != _scenario().digest()
    prefix = again.deployments[0].workload.sample.prefix
    assert prefix is not None
    prompts = again.deployments[0].workload.sample.prompt_tokens.tolist()
    assert prefix.block_tokens == 512
    assert [prefix.row(i).tolist() for i in range(len(prompts))] == [
        [7, 8] if p > 512 else [7] for p in prompts
    ]
    assert again.deployments[1].workload.sample.prefix is None


def test_it_round_trips_prefix_caching_off() -> None:
    scenario = _scenario()
    first = scenario.deployments[0]
    off = replace(first, engine_args=replace(first.engine_args, enable_prefix_caching=False))
    changed = replace(scenario, deployments=(off, *scenario.deployments[1:]))
    again = Scenario.from_json(changed.to_json())
    assert again.deployments[0].engine_args.enable_prefix_caching is False
    assert again.deployments[1].engine_args.enable_prefix_caching is True
    data = json.loads(changed.to_json())
    data["deployments"][0]["engine_args"]["enable_prefix_caching"] = "no"
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == "deployments[0].engine_args.enable_prefix_caching"


def test_it_round_trips_pinned_and_excluded_gpu_kinds_and_the_lever_switch() -> None:
    scenario = _scenario()
    first = replace(scenario.deployments[0], gpu_kinds=GpuKindChoice(pin=("L4", "L40S")))
    second = replace(scenario.deployments[1], gpu_kinds=GpuKindChoice(exclude=("H100-SXM",)))
    changed = replace(
        scenario,
        deployments=(first, second, *scenario.deployments[2:]),
        options=replace(scenario.options, hardware_moves=False),
    )
    again = Scenario.from_json(changed.to_json())
    assert again == changed
    assert again.digest() == changed.digest() != scenario.digest()
    assert again.deployments[0].gpu_kinds == GpuKindChoice(pin=("L4", "L40S"), exclude=())
    assert again.deployments[1].gpu_kinds == GpuKindChoice(pin=(), exclude=("H100-SXM",))
    assert again.options.hardware_moves is False
    data = json.loads(scenario.to_json())
    del data["deployments"][0]["gpu_kinds"]
    del data["options"]["hardware_moves"]
    left_out = Scenario.from_dict(data)
    assert left_out.deployments[0].gpu_kinds == GpuKindChoice()
    assert left_out.options.hardware_moves is True


@pytest.mark.parametrize(
    ("gpu_kinds", "field", "message"),
    [
        ({"pin": "L4"}, "deployments[0].gpu_kinds.pin", "must be a list, got str"),
        ({"pin": ["L4", "L4"]}, "deployments[0].gpu_kinds.pin[1]", "'L4' given twice"),
        (
            {"exclude": [" "]},
            "deployments[0].gpu_kinds.exclude[0]",
            "must be a GPU kind name, got ' '",
        ),
        (
            {"pin": ["L4", "L40S"], "exclude": ["H100-SXM", "L40S"]},
            "deployments[0].gpu_kinds.exclude[1]",
            "'L40S' is also pinned: pin or exclude it, not both",
        ),
        (
            {"only": ["L4"]},
            "deployments[0].gpu_kinds.only",
            "unknown field; known: ['exclude', 'pin']",
        ),
    ],
)
def test_it_names_the_bad_value_of_a_gpu_kind_choice(
    gpu_kinds: dict[str, Any], field: str, message: str
) -> None:
    data = json.loads(_scenario().to_json())
    data["deployments"][0]["gpu_kinds"] = gpu_kinds
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == field
    assert caught.value.message == message


def test_it_refuses_a_lever_switch_that_is_not_a_boolean() -> None:
    data = json.loads(_scenario().to_json())
    data["options"]["hardware_moves"] = "off"
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == "options.hardware_moves"


def test_it_round_trips_prefix_aware_routing_and_kv_offload() -> None:
    scenario = _scenario()
    first = scenario.deployments[0]
    changed = replace(
        first,
        routing="prefix_aware",
        engine_args=replace(first.engine_args, kv_offload_gib=64.5),
    )
    both = replace(scenario, deployments=(changed, *scenario.deployments[1:]))
    again = Scenario.from_json(both.to_json())
    assert again == both
    assert again.deployments[0].routing == "prefix_aware"
    assert again.deployments[0].engine_args.kv_offload_gib == 64.5
    assert again.deployments[1].routing == "round_robin"
    assert again.deployments[1].engine_args.kv_offload_gib == 0.0
    # older scenarios without the fields read as round robin without offload
    data = json.loads(scenario.to_json())
    del data["deployments"][0]["routing"]
    del data["deployments"][0]["engine_args"]["kv_offload_gib"]
    assert Scenario.from_dict(data) == scenario


def test_it_names_the_request_whose_block_hashes_do_not_fit() -> None:
    data = json.loads(_with_prefix(_scenario()).to_json())
    sample = data["deployments"][0]["workload"]["sample"]
    row = next(i for i, p in enumerate(sample["prompt_tokens"]) if p > 512)
    sample["prompt_tokens"][row] = 500
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == "deployments[0].workload.sample.prefix.hashes"
    assert caught.value.message == (
        f"request {row} has 2 blocks of 512 tokens for a 500-token prompt (at most 1)"
    )


def test_it_flags_defaults_when_fields_are_left_out() -> None:
    data = json.loads(_scenario().to_json())
    del data["deployments"][1]["slo"]
    data["deployments"][0]["slo"] = {"ttft_p95_s": 0.3}
    scenario = Scenario.from_dict(data)
    assert scenario.deployments[1].slo.defaulted == (
        "ttft_p95_s",
        "tpot_p95_s",
        "max_quality_loss_points",
    )
    assert scenario.deployments[0].slo.defaulted == ("tpot_p95_s", "max_quality_loss_points")
    assert scenario.deployments[0].slo.ttft_p95_s == 0.3
    assert Scenario.from_json(scenario.to_json()) == scenario


DROP = object()
BAD_VALUES = [
    # (where to put the bad value, the value, the field the error names, part of its message)
    ("deployments.1.slo.ttft_p95_s", 0, "deployments[1].slo.ttft_p95_s", "must be > 0"),
    # the shared bounds (advisor.engine.bounds): the admin and what-ifs refuse the same values
    (
        "deployments.1.slo.ttft_p95_s",
        1e308,
        "deployments[1].slo.ttft_p95_s",
        "must be > 0 and <= 3600 s, got 1e+308",
    ),
    (
        "deployments.0.slo.max_quality_loss_points",
        100.5,
        "deployments[0].slo.max_quality_loss_points",
        "must be >= 0 and <= 100 points, got 100.5",
    ),
    (
        "prices.H100-SXM.usd_per_gpu_hour",
        -2.0,
        "prices.H100-SXM.usd_per_gpu_hour",
        "must be >= 0 and <= 1000 USD per GPU-hour, got -2",
    ),
    ("deployments.0.replicas", "3", "deployments[0].replicas", "must be an integer"),
    (
        "deployments.0.engine_args.max_num_seq",
        3,
        "deployments[0].engine_args.max_num_seq",
        "unknown field",
    ),
    (
        "deployments.0.workload.sample.prompt_tokens.4",
        0,
        "deployments[0].workload.sample.prompt_tokens",
        "must be >= 1",
    ),
    (
        "deployments.0.workload.load.rate_rps.7",
        -1.0,
        "deployments[0].workload.load.rate_rps[7]",
        "must be finite and >= 0",
    ),
    ("deployments.1.name", "chat", "deployments[1].name", "already names deployments[0]"),
    ("prices.H100-SXM.source", DROP, "prices.H100-SXM.source", "required"),
    ("profiles.0.bw_efficiency", 1.5, "profiles[0].bw_efficiency", "must be in (0, 1]"),
    ("deployments.0.autoscaling.metric", "cpu", "deployments[0].autoscaling.metric", "'cpu'"),
    ("options.strategies", ["nope"], "options.strategies[0]", "unknown 'nope'"),
    (
        "deployments.0.spec_decode.num_accepted_tokens",
        5000,
        "deployments[0].spec_decode.num_accepted_tokens",
        "exceeds",
    ),
    ("deployments.0.routing", "random", "deployments[0].routing", "got 'random'"),
    ("deployments.0.routing", 3, "deployments[0].routing", "must be a string, got int"),
    (
        "deployments.0.engine_args.kv_offload_gib",
        -1,
        "deployments[0].engine_args.kv_offload_gib",
        "must be in [0, 16384.0] GiB, got -1",
    ),
]


def _put(data: Any, where: str, value: object) -> None:
    *parents, last = where.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if value is DROP:
        del data[last]
    elif isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


@pytest.mark.parametrize(("where", "value", "field", "message"), BAD_VALUES)
def test_it_names_the_field_of_a_bad_value(
    where: str, value: object, field: str, message: str
) -> None:
    data = json.loads(_scenario().to_json())
    _put(data, where, value)
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == field
    assert message in caught.value.message


def test_it_refuses_text_that_is_not_json() -> None:
    with pytest.raises(ScenarioError, match="not valid JSON"):
        Scenario.from_json("{nope")


def test_it_bins_the_sample_per_minute_without_a_load_shape() -> None:
    five = np.full(5, 5, dtype=np.int64)
    sample = Workload(np.array([0.0, 10.0, 59.0, 61.0, 200.0]), five, five)
    shape = WorkloadSpec(sample).load_shape
    assert shape.step_s == 60.0
    assert shape.rate_rps.tolist() == [3 / 60, 1 / 60, 0.0, 1 / 60]


def test_it_generates_a_diurnal_load_with_the_asked_shape() -> None:
    load = diurnal_load(None, days=7, mean_rps=10.0, peak_to_trough=3.0, weekend_factor=0.5)
    assert load.rate_rps.size == 7 * 1440
    weekday = load.rate_rps[: 5 * 1440]
    assert weekday.mean() == pytest.approx(10.0, rel=1e-9)
    assert weekday.max() / weekday.min() == pytest.approx(3.0, rel=1e-3)
    assert load.rate_rps[5 * 1440 :].mean() == pytest.approx(5.0, rel=1e-9)
    assert isinstance(load, LoadShape)


def test_it_loads_a_file_with_a_trace_reference_and_a_generated_load(tmp_path: Path) -> None:
    trace = ROOT / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "deployments": [
                    {
                        "name": "chat",
                        "model": "Llama-3-8B",
                        "hardware": "H100",
                        "workload": {
                            "sample": {"trace": str(trace), "num_requests": 1000, "seed": 3},
                            "load": {"diurnal": {"days": 1, "mean_rps": 2.0}},
                        },
                    }
                ]
            }
        )
    )
    scenario = load_scenario(path)
    workload = scenario.deployments[0].workload
    assert workload.sample.num_requests == 1000
    assert workload.load is not None
    assert workload.load.rate_rps.size == 1440
    assert Scenario.from_json(scenario.to_json()) == scenario
    assert load_scenario(path) == scenario  # same seed, same sample


def test_it_says_from_json_does_not_read_trace_files() -> None:
    data = json.loads(_scenario().to_json())
    data["deployments"][0]["workload"]["sample"] = {"trace": "x.csv"}
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    assert caught.value.field == "deployments[0].workload.sample.trace"
