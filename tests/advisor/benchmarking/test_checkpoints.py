"""Each A/B side's precision and its labelled quality figure (`benchmarking.checkpoints`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from advisor.benchmarking.ab import Variant, missing_checkpoint
from advisor.benchmarking.checkpoints import (
    checkpoint_precision,
    precision_of_config,
    side_quality,
)
from advisor.engine.scenario import QualityOverride

QWEN_MMLU = "Qwen docs, MMLU of Qwen2-72B-Instruct (PERF_MODEL.md)"


@pytest.mark.parametrize(
    ("config", "precision"),
    [
        ({"dtype": "bfloat16"}, "bf16"),
        ({"torch_dtype": "float16"}, "fp16"),
        ({"dtype": "float32"}, None),
        ({}, None),
        ({"dtype": "bfloat16", "quantization_config": {"quant_method": "awq", "bits": 4}},
         "awq-int4"),
        ({"quantization_config": {"quant_method": "AWQ", "w_bit": 4}}, "awq-int4"),
        ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "gptq-int4"),
        ({"quantization_config": {"quant_method": "gptq", "bits": 8}}, "gptq-int8"),
        ({"quantization_config": {"quant_method": "gptq", "bits": "8"}}, None),
        ({"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}, "fp8"),
        ({"quantization_config": {"quant_method": "compressed-tensors"}}, None),
    ],
)  # fmt: skip
def test_it_reads_the_precision_a_config_declares(
    config: dict[str, Any], precision: str | None
) -> None:
    assert precision_of_config(config) == precision


def test_it_reads_a_local_checkpoints_precision(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4}})
    )

    assert checkpoint_precision(str(tmp_path), {}) == "awq-int4"
    assert checkpoint_precision(str(tmp_path / "absent"), {}) is None


def test_it_gives_a_hub_checkpoints_precision_from_the_cache(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--org--name-AWQ" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))

    assert checkpoint_precision("org/name-AWQ", {"HF_HUB_CACHE": str(tmp_path)}) == "bf16"


def test_a_published_figure_is_labelled_with_its_source() -> None:
    quality = side_quality("Qwen/Qwen3-8B", "awq-int4", "stated in the job")

    assert quality == {
        "precision": "awq-int4",
        "precision_from": "stated in the job",
        "delta_points": -1.8,
        "source": f"{QWEN_MMLU} (AWQ 80.5 vs 82.3); applied to Qwen/Qwen3-8B as published for "
        "that model",
        "kind": "published",
    }


def test_the_users_own_figure_wins_and_says_so() -> None:
    own = QualityOverride(-0.4, "our evals, 2026-11")

    quality = side_quality("Qwen/Qwen3-8B", "awq-int4", "stated in the job", own)

    assert (quality["delta_points"], quality["source"], quality["kind"]) == (
        -0.4, "measured by you: our evals, 2026-11", "measured",
    )  # fmt: skip


def test_bf16_is_the_reference_and_an_unknown_precision_has_no_figure() -> None:
    assert side_quality("m", "bf16", "the endpoint's precision")["source"] == "reference precision"
    assert side_quality("m", None, "not stated, and the checkpoint is on the node") == {
        "precision": None,
        "precision_from": "not stated, and the checkpoint is on the node",
        "delta_points": None,
        "source": "no quality figure: the precision of this side is not known "
        "(state it as ab.<side>_quant)",
        "kind": None,
    }


def test_an_absent_checkpoint_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.mkdir()
    (present / "config.json").write_text("{}")
    variants = [Variant("baseline", (), str(present)), Variant("candidate", (), "org/absent")]

    problem = missing_checkpoint(variants, {"HF_HUB_CACHE": str(tmp_path / "hub")})

    assert problem == (
        "variant 'candidate': checkpoint 'org/absent' is not on this node: no config.json for "
        f"'org/absent' in the Hugging Face cache {tmp_path / 'hub' / 'models--org--absent'}; "
        "nothing was stopped or started"
    )
    assert missing_checkpoint(variants[:1], {}) is None
    assert missing_checkpoint([Variant("baseline")], {}) is None  # the launch's own model
