"""A quantized-checkpoint A/B on a real Celery worker and real vLLM CPU servers.

The baseline serves the BF16 tiny model every real-vLLM test serves; the candidate names its
own checkpoint (`ab.candidate_model`): the same model quantized to 4-bit AWQ by the test
support code (`tiny_awq.py`; vLLM CPU serves it with its WNA16 kernel). The job checks the
checkpoint is there, restarts the vLLM the bench worker owns on each, under the same served
model name, and measures the same light workload on both (two vLLM starts, 30-75 s each
here). The job's JSON is written to `var/test-logs/ab-checkpoints.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from advisor.benchmarking.checkpoints import QUALITY_NOT_MEASURED
from advisor.models import BenchmarkRequest, BenchmarkRun
from advisor.selectors.benchmarks import job_json
from advisor.services.benchmarks import benchmark_job_create
from tests.advisor.benchmarking.conftest import make_endpoint
from tests.support.components import missing
from tests.support.vllm_node import (
    LOG_DIR,
    SERVED_NAME,
    TINY_MODEL,
    VLLM_PYTHON,
    tiny_launch,
    tiny_model_awq,
)

pytestmark = pytest.mark.integration
JOB_TIMEOUT_S = 900
REQUESTS = 16


def test_it_ab_tests_a_bf16_checkpoint_against_its_awq_one(celery_worker: Any) -> None:
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    awq = tiny_model_awq()
    launch = tiny_launch()
    endpoint = make_endpoint(
        launch.base_url, served_name=SERVED_NAME, engine_args={"max_model_len": 1024},
        hardware="CPU-DEV-2C", model_ref=TINY_MODEL, kv_cache_bytes=1024**3, max_duration_s=300,
        local_launch={"python": launch.python, "model": launch.model, "port": launch.port,
                      "env": dict(launch.env), "engine_args": list(launch.engine_args)},
    )  # fmt: skip
    job = benchmark_job_create(
        user=None, endpoint_id=endpoint.id, kind="ab",
        workload={"kind": "concurrency", "num_requests": REQUESTS, "concurrency": 8,
                  "prompt_tokens": 32, "output_tokens": 32},
        ab={"candidate_model": awq, "label": "BF16 vs AWQ checkpoint"},
    )  # fmt: skip
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in ("completed", "failed", "cancelled"):
            break
        time.sleep(2)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "ab-checkpoints.json").write_text(json.dumps(job_json(job), indent=1))

    assert job.status == "completed", job.error
    ab = job.result["ab"]
    baseline = BenchmarkRun.objects.get(id=ab["baseline_run_id"])
    candidate = BenchmarkRun.objects.get(id=ab["candidate_run_id"])
    print(f"BF16 vs AWQ: output tok/s {baseline.summary['output_throughput']:.1f} (tiny-llama)"
          f" vs {candidate.summary['output_throughput']:.1f} (tiny-llama-awq), "
          f"x{ab['measured']['output_throughput_ratio']:.2f}")  # fmt: skip
    for run in (baseline, candidate):
        assert run.status == "completed", run.error
        assert BenchmarkRequest.objects.filter(run=run, status="ok").count() == REQUESTS
        assert run.summary["output_throughput"] > 0
        assert run.config["vllm_ready_after_s"] > 0
    # each server said which checkpoint it served under the one name the client asked for
    assert baseline.config["served_model"] == {"id": SERVED_NAME, "root": TINY_MODEL}
    assert candidate.config["served_model"] == {"id": SERVED_NAME, "root": awq}
    assert "model" not in baseline.config
    assert candidate.config["model"] == awq
    assert ab["quality"] == {
        "measured": False,
        "note": QUALITY_NOT_MEASURED,
        "baseline": {"model": None, "precision": "bf16",
                     "precision_from": "the endpoint's precision", "delta_points": 0.0,
                     "source": "reference precision", "kind": "reference"},
        "candidate": {"model": awq, "precision": "awq-int4",
                      "precision_from": "the checkpoint's config.json", "delta_points": -1.8,
                      "source": "Qwen docs, MMLU of Qwen2-72B-Instruct (PERF_MODEL.md) (AWQ "
                      f"80.5 vs 82.3); applied to {TINY_MODEL} as published for that model",
                      "kind": "published"},
    }  # fmt: skip
