"""An A/B benchmark job on a real Celery worker and real vLLM CPU servers: continuous batching.

The job restarts a vLLM the bench worker owns (the endpoint's `local_launch`) with
`--max-num-seqs 1`, then `--max-num-seqs 64`, runs the same 64-user workload on each, and
stores both runs, the measured ratios and the engine's predicted ones (two vLLM starts,
about a minute each on this machine). The job's JSON is also written to
`var/test-logs/ab-continuous-batching.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from advisor.models import BenchmarkJob, BenchmarkRequest, BenchmarkRun
from advisor.selectors.benchmarks import job_json
from advisor.services.benchmarks import benchmark_job_create
from tests.advisor.benchmarking.conftest import make_endpoint
from tests.support.components import missing
from tests.support.vllm_node import LOG_DIR, SERVED_NAME, TINY_MODEL, VLLM_PYTHON, tiny_launch

pytestmark = pytest.mark.integration
JOB_TIMEOUT_S = 900
STEP_FIELDS = ("engine_steps", "mean_tokens_per_step", "samples", "max_num_requests_running")


def test_it_measures_continuous_batching_in_an_ab_job(celery_worker: Any) -> None:
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    launch = tiny_launch()
    endpoint = make_endpoint(
        launch.base_url, served_name=SERVED_NAME, engine_args={"max_model_len": 1024},
        hardware="CPU-DEV-2C", model_ref=TINY_MODEL, kv_cache_bytes=1024**3, max_duration_s=300,
        local_launch={"python": launch.python, "model": launch.model, "port": launch.port,
                      "env": dict(launch.env), "engine_args": list(launch.engine_args)},
    )  # fmt: skip
    job = benchmark_job_create(
        user=None, endpoint_id=endpoint.id, kind="ab",
        workload={"kind": "concurrency", "num_requests": 64, "concurrency": 64,
                  "prompt_tokens": 32, "output_tokens": 64},
        ab={"baseline_args": {"max_num_seqs": 1}, "candidate_args": {"max_num_seqs": 64},
            "label": "continuous batching"},
    )  # fmt: skip
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in ("completed", "failed", "cancelled"):
            break
        time.sleep(2)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "ab-continuous-batching.json").write_text(json.dumps(job_json(job), indent=1))

    assert job.status == "completed", job.error
    ab = job.result["ab"]
    measured, guess = ab["measured"], ab["predicted"]["output_throughput_ratio"]
    print(f"continuous batching: output tok/s x{measured['output_throughput_ratio']:.2f} "
          f"(predicted x{guess['predicted']:.2f})")  # fmt: skip
    baseline = BenchmarkRun.objects.get(id=ab["baseline_run_id"])
    candidate = BenchmarkRun.objects.get(id=ab["candidate_run_id"])
    assert baseline.engine_args == {"max_num_seqs": 1}
    assert candidate.engine_args == {"max_num_seqs": 64}
    for run in (baseline, candidate):
        assert run.status == "completed", run.error
        assert BenchmarkRequest.objects.filter(run=run, status="ok").count() == 64
        assert run.config["vllm_ready_after_s"] > 0
    # the scheduler really ran one sequence at a time, then many: per request one 32-token
    # prefill step (+1 generated) and 63 one-token decode steps = 96 tokens in 64 steps
    steps = {side: {k: run.server_metrics.get(k) for k in STEP_FIELDS}
             for side, run in (("baseline", baseline), ("candidate", candidate))}  # fmt: skip
    assert baseline.server_metrics["mean_tokens_per_step"] == pytest.approx(1.5, abs=0.02), steps
    assert candidate.server_metrics["mean_tokens_per_step"] > 16, steps
    # gauge samples (every 1 s) can miss the candidate's short run, never exceed the cap
    assert baseline.server_metrics["max_num_requests_running"] <= 1, steps
    # 64 users: batching must win by a wide margin even on a noisy 2-core machine
    assert ab["measured"]["output_throughput_ratio"] > 3.0
    predicted = ab["predicted"]["output_throughput_ratio"]
    assert predicted["predicted"] > 1.0
    assert predicted["error"] == pytest.approx(predicted["predicted"] / predicted["measured"] - 1)
    assert candidate.prediction_error["median_abs_error"] is not None
    assert BenchmarkJob.objects.get(id=job.id).progress == 1.0
