"""A/B by local restart (`advisor.benchmarking.ab.run_variants`) in a benchmark job.

The endpoint's `local_launch` points at the fake OpenAI server and a stand-in replaces the
vLLM process (its start and stop are recorded), so the job measures the fake server for each
variant without starting vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from advisor.benchmarking import ab, runner
from advisor.benchmarking.checkpoints import QUALITY_NOT_MEASURED
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRequest, BenchmarkRun
from advisor.services.benchmarks import BenchmarkJobError, benchmark_job_create
from probes.agent.vllm_process import VllmLaunch
from tests.advisor.benchmarking.fake_openai import MODEL, FakeServer

WORKLOAD = {"kind": "concurrency", "num_requests": 12, "concurrency": 4, "prompt_tokens": 8,
            "output_tokens": 8}  # fmt: skip
AB = {"baseline_args": {"max_num_seqs": 1}, "candidate_args": {"max_num_seqs": 64},
      "label": "continuous batching"}  # fmt: skip


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """("start" | "stop", engine args) of each stand-in vLLM process, in order."""
    events: list[tuple[str, tuple[str, ...]]] = []

    class StandIn:
        """The fake server already serves: starting and stopping only record the call."""

        def __init__(self, launch: VllmLaunch, log_path: Path) -> None:
            self.engine_args = launch.engine_args

        def start(self, ready_timeout_s: float) -> None:
            events.append(("start", self.engine_args))

        def stop(self) -> None:
            events.append(("stop", self.engine_args))

    monkeypatch.setattr(ab, "VllmProcess", StandIn)
    return events


@pytest.fixture
def local(endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer]) -> BenchmarkEndpoint:
    """The endpoint, with a local launch on the fake server's port (no engine args of its own)."""
    port = urlsplit(fake_server[0]).port
    BenchmarkEndpoint.objects.filter(id=endpoint.id).update(
        local_launch={"python": "/no/python", "model": "fake/model", "port": port}
    )
    return endpoint


def _ab(endpoint: BenchmarkEndpoint) -> BenchmarkJob:
    job = benchmark_job_create(
        user=None, endpoint_id=endpoint.id, kind="ab", workload=WORKLOAD, ab=AB,
        options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()  # tasks run eagerly in tests: the job has run on commit
    return job


def test_it_measures_each_variant_after_a_restart(
    local: BenchmarkEndpoint, processes: list[tuple[str, tuple[str, ...]]]
) -> None:
    job = _ab(local)

    assert job.status == "completed", job.error
    assert job.result["ab"]["switched_by"] == "local restart"
    baseline, candidate = ("--max-num-seqs", "1"), ("--max-num-seqs", "64")
    assert processes == [("start", baseline), ("stop", baseline),
                         ("start", candidate), ("stop", candidate)]  # fmt: skip
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.summary["completed"]) for r in runs] == [
        ("baseline", "completed", 12),
        ("candidate", "completed", 12),
    ]


def test_it_keeps_the_baseline_and_stops_vllm_when_measuring_the_candidate_raises(
    local: BenchmarkEndpoint,
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_run_benchmark = runner.run_benchmark
    calls: list[str] = []

    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        calls.append("run")
        if len(calls) == 2:  # the candidate's measurement: a bug in the client
            raise ValueError("boom")
        return real_run_benchmark(*args, **kwargs)

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)

    job = _ab(local)

    error = "variant 'candidate': internal error: ValueError('boom')"
    assert job.status == "failed"
    assert job.error == error
    baseline, candidate = ("--max-num-seqs", "1"), ("--max-num-seqs", "64")
    assert processes == [("start", baseline), ("stop", baseline),
                         ("start", candidate), ("stop", candidate)]  # fmt: skip
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.error) for r in runs] == [
        ("baseline", "completed", ""),
        ("candidate", "failed", error),
    ]
    assert BenchmarkRequest.objects.filter(run=runs[0], status="ok").count() == 12
    assert runs[0].summary["completed"] == 12
    assert not BenchmarkRequest.objects.filter(run=runs[1]).exists()
    assert runs[1].summary["completed"] == 0
    assert "vllm_ready_after_s" not in runs[1].config
    result = job.result["ab"]
    assert (result["baseline_run_id"], result["candidate_run_id"]) == (runs[0].id, runs[1].id)
    (logged,) = [r for r in caplog.records if r.name == "advisor.benchmarking.ab"]
    assert logged.getMessage() == "A/B variant 'candidate' raised while it was measured"
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ValueError


def test_it_stores_the_variants_after_a_raising_one_unmeasured(
    local: BenchmarkEndpoint,
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("client bug")

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)

    job = _ab(local)

    error = "variant 'baseline': internal error: RuntimeError('client bug')"
    assert job.status == "failed"
    assert job.error == error
    baseline = ("--max-num-seqs", "1")
    assert processes == [("start", baseline), ("stop", baseline)]  # the candidate never started
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.error) for r in runs] == [
        ("baseline", "failed", error),
        ("candidate", "failed", f"not run: {error}"),
    ]
    assert not BenchmarkRequest.objects.filter(run__job=job).exists()


def test_it_lets_a_keyboard_interrupt_through_and_stops_vllm(
    processes: list[tuple[str, tuple[str, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ab, "run_benchmark", run_benchmark)
    launch = VllmLaunch("/no/python", "fake/model", MODEL, port=8000)
    variants = [ab.Variant("baseline", ("--max-num-seqs", "1")), ab.Variant("candidate")]

    with pytest.raises(KeyboardInterrupt):
        ab.run_variants(
            launch, variants, WorkloadSpec.from_json(WORKLOAD).build(), log_dir=tmp_path
        )

    assert processes == [("start", ("--max-num-seqs", "1")), ("stop", ("--max-num-seqs", "1"))]


# -- variants serving their own checkpoint --------------------------------------------------
@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """("start" | "stop", --model) of each stand-in vLLM process, in order."""
    events: list[tuple[str, str]] = []

    class StandIn:
        def __init__(self, launch: VllmLaunch, log_path: Path) -> None:
            self.model = launch.model
            assert launch.served_name == MODEL  # every side under the endpoint's served name

        def start(self, ready_timeout_s: float) -> None:
            events.append(("start", self.model))

        def stop(self) -> None:
            events.append(("stop", self.model))

    monkeypatch.setattr(ab, "VllmProcess", StandIn)
    return events


def _checkpoint(path: Path, config: dict[str, Any]) -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_a_side_serves_its_own_checkpoint_labelled_with_its_quality(
    local: BenchmarkEndpoint, launched: list[tuple[str, str]], tmp_path: Path
) -> None:
    awq = _checkpoint(tmp_path / "model-AWQ", {"quantization_config": {"quant_method": "awq",
                                                                        "bits": 4}})  # fmt: skip
    job = benchmark_job_create(
        user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD,
        ab={"candidate_model": awq, "label": "AWQ checkpoint"}, options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()

    assert job.status == "completed", job.error
    assert launched == [("start", "fake/model"), ("stop", "fake/model"),
                        ("start", awq), ("stop", awq)]  # fmt: skip
    baseline, candidate = BenchmarkRun.objects.filter(job=job).order_by("sequence")
    assert "model" not in baseline.config
    assert candidate.config["model"] == awq
    # the fake server's /v1/models has no root: the id the client asked for is recorded
    assert candidate.config["served_model"] == {"id": MODEL, "root": None}
    quality = job.result["ab"]["quality"]
    assert (quality["measured"], quality["note"]) == (False, QUALITY_NOT_MEASURED)
    assert quality["baseline"] == {
        "model": None, "precision": "bf16", "precision_from": "the endpoint's precision",
        "delta_points": 0.0, "source": "reference precision", "kind": "reference",
    }  # fmt: skip
    assert quality["candidate"] == {
        "model": awq, "precision": "awq-int4", "precision_from": "the checkpoint's config.json",
        "delta_points": -1.8,
        "source": "Qwen docs, MMLU of Qwen2-72B-Instruct (PERF_MODEL.md) (AWQ 80.5 vs 82.3); "
        "applied to fake/model as published for that model",
        "kind": "published",
    }  # fmt: skip


def test_the_users_own_quality_figure_labels_a_side(
    local: BenchmarkEndpoint, launched: list[tuple[str, str]], tmp_path: Path
) -> None:
    gptq = _checkpoint(tmp_path / "model-GPTQ", {})
    job = benchmark_job_create(
        user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD,
        ab={"candidate_model": gptq, "candidate_quant": "gptq",
            "candidate_quality": {"delta_points": -0.3, "source": "our evals"}},
        options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()

    assert job.status == "completed", job.error
    candidate = job.result["ab"]["quality"]["candidate"]
    assert (candidate["precision"], candidate["precision_from"]) == (
        "gptq-int4",
        "stated in the job",
    )
    assert (candidate["delta_points"], candidate["source"], candidate["kind"]) == (
        -0.3,
        "measured by you: our evals",
        "measured",
    )


def test_an_absent_checkpoint_fails_the_job_before_anything_starts(
    local: BenchmarkEndpoint, launched: list[tuple[str, str]], tmp_path: Path
) -> None:
    absent = str(tmp_path / "no-such-AWQ")
    job = benchmark_job_create(
        user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD,
        ab={"candidate_model": absent}, options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()

    assert job.status == "failed"
    assert job.error == (
        f"variant 'candidate': checkpoint '{absent}' is not on this node: no config.json in "
        f"'{absent}' (not a directory holding one); nothing was stopped or started"
    )
    assert launched == []
    assert not BenchmarkRun.objects.filter(job=job).exists()


@pytest.mark.parametrize(
    ("ab_input", "field", "message"),
    [
        ({"candidate_model": ""}, "ab.candidate_model",
         "expected a checkpoint: a local path or a Hugging Face id (org/name)"),
        ({"baseline_model": 7}, "ab.baseline_model",
         "expected a checkpoint: a local path or a Hugging Face id (org/name)"),
        ({"candidate_model": "org/a\norg/b"}, "ab.candidate_model",
         "expected one line of at most 1000 characters, no spaces around it"),
        ({"candidate_model": " org/a"}, "ab.candidate_model",
         "expected one line of at most 1000 characters, no spaces around it"),
        ({"candidate_model": "--trust-remote-code"}, "ab.candidate_model",
         "must not start with '-' (vLLM would read a flag)"),
        ({"candidate_args": {"model": "org/a"}}, "ab.candidate_args.model",
         "set by the A/B itself (a checkpoint goes in ab.candidate_model; every side is "
         "served under the endpoint's served model name)"),
        ({"baseline_args": {"served_model_name": "x"}}, "ab.baseline_args.served_model_name",
         "set by the A/B itself (a checkpoint goes in ab.baseline_model; every side is "
         "served under the endpoint's served model name)"),
        ({"candidate_quality": {"delta_points": -1, "source": "evals"}}, "ab.candidate_quality",
         "say which precision the figure is for (ab.candidate_quant)"),
        ({"candidate_quant": "awq", "candidate_quality": {"delta_points": "bad", "source": "x"}},
         "ab.candidate_quality.delta_points", "expected a number, got 'bad'"),
        ({"candidate_quant": "awq", "candidate_quality": {"delta_points": -1, "source": " "}},
         "ab.candidate_quality.source",
         "say where the figure comes from (at most 500 characters)"),
        ({"candidate_quant": "awq", "candidate_quality": {"delta_points": -1, "by": "me"}},
         "ab.candidate_quality.by", "unknown field"),
        ({"candidate_model_id": "org/a"}, "ab.candidate_model_id", "unknown field"),
    ],
)  # fmt: skip
def test_it_names_the_bad_checkpoint_field(
    local: BenchmarkEndpoint, ab_input: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(BenchmarkJobError) as caught:
        benchmark_job_create(
            user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD, ab=ab_input
        )

    assert (caught.value.field, caught.value.message) == (field, message)
    assert not BenchmarkJob.objects.exists()


def test_an_unknown_precision_names_the_known_ones(local: BenchmarkEndpoint) -> None:
    with pytest.raises(BenchmarkJobError) as caught:
        benchmark_job_create(
            user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD,
            ab={"candidate_quant": "int3"},
        )  # fmt: skip

    assert caught.value.field == "ab.candidate_quant"
    assert caught.value.message.startswith("unknown 'int3'; known: bf16, fp16, fp8, int8, ")


def test_the_spec_keeps_each_sides_checkpoint_and_precision(
    local: BenchmarkEndpoint, launched: list[tuple[str, str]], tmp_path: Path
) -> None:
    awq = _checkpoint(tmp_path / "m-AWQ", {})
    job = benchmark_job_create(
        user=None, endpoint_id=local.id, kind="ab", workload=WORKLOAD,
        ab={"candidate_model": awq, "candidate_quant": "AWQ"}, options={"warmup_requests": 0},
    )  # fmt: skip

    assert job.spec["ab"] == {
        "baseline_args": {}, "candidate_args": {}, "candidate_model": awq,
        "candidate_quant": "awq-int4", "label": "",
    }  # fmt: skip
