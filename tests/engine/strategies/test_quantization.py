"""Quantization: fewer GPUs when a precision fits, within the quality floor, sources shown."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.engine.scenario import DeploymentSpec, EngineArgs, QualityOverride, SloSpec
from advisor.engine.strategies import quantization
from advisor.engine.strategies._common import usd
from tests.engine.strategies.helpers import context, deployment, run


def _big(loss: float, **changes: Any) -> DeploymentSpec:
    # Llama-3-70B on 48 GB L40S GPUs: BF16 needs TP4, FP8 TP2, only INT4 fits on one GPU
    return deployment(
        "big", model="Llama-3-70B", hardware="L40S", tensor_parallel=4, rate_rps=0.2,
        slo=SloSpec(3.0, 0.15, loss), **changes,
    )  # fmt: skip


def test_it_puts_a_model_on_one_gpu_when_only_int4_fits_and_quality_allows() -> None:
    result = run(quantization, context(_big(2.0)), "big")
    assert result.status == "recommended"
    assert result.config_change.engine_args["--tensor-parallel-size"] == 1
    assert result.config_change.engine_args["--quantization"] in ("awq_marlin", "gptq_marlin")
    assert result.projected.gpus == 1.0
    assert result.baseline.gpus == 4.0
    # a quantized checkpoint is a different model path, and the change says so
    assert result.config_change.model_path
    assert any("different model path" in note for note in result.config_change.notes)


def test_it_keeps_int4_out_when_the_quality_floor_forbids_it() -> None:
    result = run(quantization, context(_big(1.0)), "big")
    assert result.config_change.engine_args.get("--quantization") not in (
        "awq_marlin",
        "gptq_marlin",
    )
    assert result.projected.gpus >= 2.0
    int4 = [a for a in result.alternatives if a.label.startswith(("awq-int4", "gptq-int4"))]
    assert int4
    assert all(not a.feasible and "quality loss" in a.reason for a in int4 if a.projection)


def test_it_labels_quality_figures_by_source() -> None:
    own = {"awq-int4": QualityOverride(-0.4, "our MMLU run 2026-01")}
    result = run(quantization, context(_big(1.0, quality_overrides=own)), "big")
    rows = {row["label"]: row for row in result.details["schemes"]}
    awq = next(row for label, row in rows.items() if label.startswith("awq-int4, TP1"))
    assert awq["quality_kind"] == "measured"
    assert awq["quality_delta_points"] == -0.4
    gptq = next(row for label, row in rows.items() if label.startswith("gptq-int4"))
    assert gptq["quality_kind"] == "published"
    assert "Qwen" in gptq["quality_source"]
    # with the user's own figure the 1-point floor now admits AWQ on one GPU
    assert result.config_change.engine_args["--quantization"] == "awq_marlin"
    gguf = [a for a in result.alternatives if a.label.startswith("gguf")]
    assert gguf
    assert all("not model" in a.reason for a in gguf)


def test_it_does_not_recommend_a_precision_that_saves_nothing() -> None:
    # a light 8B load fits on one BF16 GPU already: nothing to gain from quantizing
    result = run(quantization, context(deployment("light", rate_rps=0.2)), "light")
    assert result.status == "not_recommended"
    assert "--quantization" not in result.config_change.engine_args


def _hot() -> DeploymentSpec:
    # one replica capped at 8 sequences misses the SLOs at 20 req/s: right-sized, today's
    # configuration needs 3 replicas; FP8 needs 2
    return deployment(
        "hot", rate_rps=20.0, engine_args=EngineArgs(max_num_seqs=8), slo=SloSpec(2.0, 0.05, 1.0)
    )


def test_it_credits_a_precision_only_with_what_it_saves_over_todays_right_size() -> None:
    result = run(quantization, context(_hot()), "hot")
    assert result.status == "recommended"
    assert (result.baseline.gpus, result.reference.gpus, result.projected.gpus) == (1.0, 3.0, 2.0)
    # today's single replica costs less than the plan, but it misses the SLOs: the row's
    # saving is the one GPU quantization saves over today's configuration right-sized
    assert result.added_usd_per_month == pytest.approx(result.reference.usd_per_month / 3)
    assert result.added_fraction == pytest.approx(1 / 3)
    assert f"saves {usd(result.added_usd_per_month)}/month (33%) over today's" in result.summary
    assert "-100%" not in result.summary
