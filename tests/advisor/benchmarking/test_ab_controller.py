"""A/B on a controller-managed node: each variant a desired-config generation, then restored.

The endpoint is the fake OpenAI server; a thread plays the node's agent (reads the desired
config, reports through the same service a real agent's POST uses) and sets the fake
server's pace from the applied engine args, so the two variants measure differently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from advisor.models import (
    BenchmarkEndpoint,
    BenchmarkJob,
    BenchmarkRequest,
    BenchmarkRun,
    JobKind,
    JobStatus,
)
from advisor.services import ab_controller, benchmark_runs
from advisor.services.benchmarks import benchmark_job_cancel, benchmark_job_create
from advisor.services.rollouts import RolloutError, rollout_propose
from probes.agent.desired import NodeConfig
from probes.models import Node
from probes.node_config import node_desired_config_set
from tests.advisor.benchmarking.fake_openai import FakeServer
from tests.advisor.rollouts.helpers import Agent

WORKLOAD = {"kind": "concurrency", "num_requests": 12, "concurrency": 4, "prompt_tokens": 8,
            "output_tokens": 8}  # fmt: skip
ORIGINAL: dict[str, Any] = {"engine_args": {"max_num_seqs": 8, "enable_prefix_caching": True},
            "model": "/models/llama"}  # fmt: skip
AB = {"baseline_args": {"max_num_seqs": 1}, "candidate_args": {"max_num_seqs": 64},
      "label": "continuous batching"}  # fmt: skip
# The fake server's pause between tokens per applied max_num_seqs: the candidate is 5x faster.
ITL_S = {1: 0.01, 8: 0.002, 64: 0.002}


class FakeAgent(threading.Thread):
    """Applies each new desired generation like a node controller, unless told otherwise."""

    def __init__(self, node: Node, server: FakeServer) -> None:
        super().__init__(daemon=True)
        self.agent = Agent(node)
        self.server = server
        self.applied: list[tuple[int, dict[str, Any]]] = []
        # generation -> what to do instead of applying: ("fail", why) or ("ignore", "")
        self.plan: dict[int, tuple[str, str]] = {}
        self.on_generation: Callable[[int], None] = lambda generation: None
        self.done = threading.Event()

    def start_serving(self) -> None:
        """Serve ORIGINAL as generation 1 before the job starts (a node in steady state)."""
        node_desired_config_set(node_id=self.agent.node.id, config=NodeConfig.from_json(ORIGINAL))
        self.agent.apply_desired()
        self.server.behaviour.itl_s = ITL_S[8]

    def run(self) -> None:
        seen = self.agent.generation
        try:
            while not self.done.is_set():
                desired = self.agent.desired()
                generation = desired["generation"]
                if generation > seen:
                    seen = generation
                    self.on_generation(generation)
                    self._handle(generation, desired["config"])
                time.sleep(0.02)
        finally:
            connection.close()  # this thread's own connection

    def _handle(self, generation: int, config: dict[str, Any]) -> None:
        action, why = self.plan.get(generation, ("apply", ""))
        if action == "fail":
            self.agent.fail_desired(why)
        elif action == "apply":
            self.server.behaviour.itl_s = ITL_S[config["engine_args"]["max_num_seqs"]]
            self.applied.append((generation, config))
            self.agent.apply_desired()


@pytest.fixture
def managed(
    endpoint: BenchmarkEndpoint, fake_server: tuple[str, FakeServer], monkeypatch: Any
) -> Iterator[FakeAgent]:
    """The endpoint's node serving ORIGINAL (generation 1) under a fake agent's controller."""
    monkeypatch.setattr(ab_controller, "POLL_S", 0.02)
    _url, server = fake_server
    agent = FakeAgent(endpoint.node, server)
    agent.start_serving()
    agent.start()
    yield agent
    agent.done.set()
    agent.join(10)


def _ab(endpoint: BenchmarkEndpoint, **ab: Any) -> BenchmarkJob:
    job = benchmark_job_create(
        user=None, endpoint_id=endpoint.id, kind="ab", workload=WORKLOAD,
        ab={**AB, **ab}, options={"warmup_requests": 0},
    )  # fmt: skip
    job.refresh_from_db()  # tasks run eagerly in tests: the job has run on commit
    return job


def _desired(node: Node) -> dict[str, Any]:
    node.refresh_from_db()
    return node.desired_config


def _restored(generation: int) -> dict[str, Any]:
    return {"generation": generation, "config": ORIGINAL, "rollout_id": None,
            "probe_interval_s": 0.0, "probe_for_s": 0.0}  # fmt: skip


def _with(args: dict[str, Any]) -> dict[str, Any]:
    return {**ORIGINAL, "engine_args": {**ORIGINAL["engine_args"], **args}}


def test_it_switches_each_variant_through_the_controller_and_restores(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    job = _ab(endpoint)

    assert job.status == JobStatus.COMPLETED, job.error
    assert managed.applied == [
        (2, _with({"max_num_seqs": 1})),
        (3, _with({"max_num_seqs": 64})),
        (4, ORIGINAL),
    ]
    assert _desired(endpoint.node) == _restored(4)
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.engine_args, r.status) for r in runs] == [
        ("baseline", {"max_num_seqs": 1}, "completed"),
        ("candidate", {"max_num_seqs": 64}, "completed"),
    ]
    assert all(r.summary["completed"] == 12 for r in runs)
    assert all(r.config["vllm_ready_after_s"] >= 0 for r in runs)
    ab = job.result["ab"]
    assert ab["baseline_run_id"] == runs[0].id
    assert ab["candidate_run_id"] == runs[1].id
    assert ab["label"] == "continuous batching"
    assert ab["switched_by"] == "controller"
    assert ab["controller"] == {
        "node": "bench-node",
        "original_generation": 1,
        "generations": {"baseline": 2, "candidate": 3, "restore": 4},
        "restore": {"generation": 4, "served": True, "error": ""},
    }
    # 8 tokens 10 ms apart vs 2 ms apart: the candidate streams several times faster.
    assert ab["measured"]["output_throughput_ratio"] > 2.0


def test_it_fails_with_the_agents_reason_and_still_restores(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    managed.plan[3] = ("fail", "vLLM exited with code 1: CUDA out of memory")

    job = _ab(endpoint)

    assert job.status == JobStatus.FAILED
    assert job.error == (
        "node bench-node, candidate (generation 3): the agent could not apply it: "
        "vLLM exited with code 1: CUDA out of memory (previous config serves)"
    )
    assert managed.applied == [(2, _with({"max_num_seqs": 1})), (4, ORIGINAL)]
    assert _desired(endpoint.node) == _restored(4)
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status) for r in runs] == [("baseline", "completed"),
                                                   ("candidate", "failed")]  # fmt: skip
    assert runs[1].summary["completed"] == 0
    assert job.result["ab"]["controller"]["restore"]["served"] is True


def test_it_keeps_the_baseline_and_restores_when_measuring_the_candidate_raises(
    endpoint: BenchmarkEndpoint,
    managed: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_run_benchmark = benchmark_runs.run_benchmark
    calls: list[str] = []

    def run_benchmark(*args: Any, **kwargs: Any) -> Any:
        calls.append("run")
        if len(calls) == 2:  # the candidate's measurement: a bug in the client
            raise ValueError("boom")
        return real_run_benchmark(*args, **kwargs)

    monkeypatch.setattr(benchmark_runs, "run_benchmark", run_benchmark)

    job = _ab(endpoint)

    error = "variant 'candidate': internal error: ValueError('boom')"
    assert job.status == JobStatus.FAILED
    assert job.error == error
    assert managed.applied == [
        (2, _with({"max_num_seqs": 1})),
        (3, _with({"max_num_seqs": 64})),
        (4, ORIGINAL),
    ]
    assert _desired(endpoint.node) == _restored(4)
    runs = list(BenchmarkRun.objects.filter(job=job).order_by("sequence"))
    assert [(r.label, r.status, r.error) for r in runs] == [
        ("baseline", "completed", ""),
        ("candidate", "failed", error),
    ]
    assert BenchmarkRequest.objects.filter(run=runs[0], status="ok").count() == 12
    assert runs[0].summary["completed"] == 12
    assert not BenchmarkRequest.objects.filter(run=runs[1]).exists()
    assert runs[1].summary["completed"] == 0
    ab = job.result["ab"]
    assert (ab["baseline_run_id"], ab["candidate_run_id"]) == (runs[0].id, runs[1].id)
    assert ab["controller"]["restore"] == {"generation": 4, "served": True, "error": ""}
    (logged,) = [r for r in caplog.records if r.name == "advisor.benchmarking.ab"]
    assert logged.getMessage() == "A/B variant 'candidate' raised while it was measured"
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ValueError


def test_it_names_the_run_it_could_not_store_and_keeps_the_other(
    endpoint: BenchmarkEndpoint,
    managed: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_store_run = benchmark_runs._store_run

    def store_run(ctx: Any, label: str, *args: Any, **kwargs: Any) -> BenchmarkRun:
        if label == "candidate":  # e.g. a bug in the candidate's prediction
            raise KeyError("figures")
        return real_store_run(ctx, label, *args, **kwargs)

    monkeypatch.setattr(benchmark_runs, "_store_run", store_run)

    job = _ab(endpoint)

    assert job.status == JobStatus.FAILED
    assert job.error == "variant 'candidate': internal error storing its run: KeyError('figures')"
    (run,) = BenchmarkRun.objects.filter(job=job)
    assert (run.label, run.status, run.summary["completed"]) == ("baseline", "completed", 12)
    assert BenchmarkRequest.objects.filter(run=run, status="ok").count() == 12
    assert job.result == {
        "ab": {
            "label": "continuous batching",
            "baseline_run_id": run.id,
            "switched_by": "controller",
            "controller": {
                "node": "bench-node",
                "original_generation": 1,
                "generations": {"baseline": 2, "candidate": 3, "restore": 4},
                "restore": {"generation": 4, "served": True, "error": ""},
            },
        }
    }
    assert _desired(endpoint.node) == _restored(4)
    (logged,) = [r for r in caplog.records if r.name == "advisor.services.benchmark_runs"]
    assert logged.getMessage() == f"A/B job {job.id}: storing the candidate run raised"
    assert logged.exc_info is not None
    assert logged.exc_info[0] is KeyError


def test_it_stops_waiting_when_cancelled_and_restores(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    managed.plan[2] = ("ignore", "")  # the baseline never comes up

    def cancel(generation: int) -> None:
        if generation == 2:
            benchmark_job_cancel(job_id=BenchmarkJob.objects.get().id)

    managed.on_generation = cancel

    job = _ab(endpoint)

    assert job.status == JobStatus.CANCELLED
    assert managed.applied == [(3, ORIGINAL)]
    assert _desired(endpoint.node) == _restored(3)
    assert job.result["ab"]["controller"]["generations"] == {"baseline": 2, "restore": 3}
    assert not BenchmarkRun.objects.filter(job=job, status="completed").exists()


def test_it_reports_a_restore_that_did_not_come_back(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    managed.plan[4] = ("ignore", "")

    job = _ab(endpoint, apply_timeout_s=1)

    assert job.status == JobStatus.COMPLETED  # both variants were measured
    assert job.error.startswith("restoring the original config: not serving within 1 s")
    restore = job.result["ab"]["controller"]["restore"]
    assert restore["generation"] == 4
    assert restore["served"] is False
    assert _desired(endpoint.node) == _restored(4)  # still asked for: the agent may catch up


def test_it_refuses_an_ab_on_a_node_a_rollout_holds(
    endpoint: BenchmarkEndpoint, managed: FakeAgent, bob: User
) -> None:
    rollout = rollout_propose(
        user=bob, nodes=[endpoint.node_id], change={"title": "t", "engine_args": {"a": 1}}
    )

    job = _ab(endpoint)

    assert job.status == JobStatus.FAILED
    assert job.error == (
        f"node bench-node is in rollout #{rollout.id} (pending): an A/B would change its "
        "config under the rollout; wait until it is over or abort it first"
    )
    assert _desired(endpoint.node)["generation"] == 1  # nothing was switched
    assert managed.applied == []
    assert not BenchmarkRun.objects.filter(job=job).exists()


def test_it_refuses_a_rollout_on_a_node_an_ab_holds(
    endpoint: BenchmarkEndpoint, managed: FakeAgent, bob: User
) -> None:
    running = BenchmarkJob.objects.create(
        endpoint=endpoint, kind=JobKind.AB, spec={"ab": AB}, max_concurrency=4,
        max_duration_s=60, status=JobStatus.RUNNING,
    )  # fmt: skip

    change = {"title": "t", "engine_args": {"a": 1}}
    with pytest.raises(RolloutError) as refused:
        rollout_propose(user=bob, nodes=[endpoint.node_id], change=change)

    assert refused.value.status == 409
    assert refused.value.message == (
        f"node bench-node is in benchmark A/B #{running.id}, which switches its config; "
        "wait until it is over or cancel it first"
    )
    BenchmarkJob.objects.filter(id=running.id).update(status=JobStatus.COMPLETED)
    assert rollout_propose(user=bob, nodes=[endpoint.node_id], change=change).status == "pending"


def test_the_endpoint_list_says_a_controller_endpoint_can_run_an_ab(
    endpoint: BenchmarkEndpoint, managed: FakeAgent, carol: User
) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(carol)
    listed = client.get("/api/v1/benchmark-endpoints/").json()

    assert [(item["id"], item["ab"]) for item in listed] == [(endpoint.id, True)]


def test_a_side_with_its_own_checkpoint_asks_the_controller_for_it(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    job = _ab(endpoint, candidate_model="org/llama-AWQ", candidate_quant="awq-int4")

    assert job.status == JobStatus.COMPLETED, job.error
    assert managed.applied == [
        (2, _with({"max_num_seqs": 1})),
        (3, {**_with({"max_num_seqs": 64}), "model": "org/llama-AWQ"}),
        (4, ORIGINAL),
    ]
    candidate = job.result["ab"]["quality"]["candidate"]
    assert (candidate["model"], candidate["precision"], candidate["precision_from"]) == (
        "org/llama-AWQ",
        "awq-int4",
        "stated in the job",
    )


def test_a_checkpoint_the_agent_lacks_fails_with_its_reason_and_restores(
    endpoint: BenchmarkEndpoint, managed: FakeAgent
) -> None:
    # what the local controller answers for an absent checkpoint (before it stops anything)
    managed.plan[3] = ("fail", "checkpoint 'org/llama-AWQ' is not on this node: no config.json "
                       "for 'org/llama-AWQ' in the Hugging Face cache /hf/models--org--llama-AWQ; "
                       "nothing was stopped")  # fmt: skip

    job = _ab(endpoint, candidate_model="org/llama-AWQ")

    assert job.status == JobStatus.FAILED
    assert job.error == (
        "node bench-node, candidate (generation 3): the agent could not apply it: checkpoint "
        "'org/llama-AWQ' is not on this node: no config.json for 'org/llama-AWQ' in the Hugging "
        "Face cache /hf/models--org--llama-AWQ; nothing was stopped (previous config serves)"
    )
    assert managed.applied == [(2, _with({"max_num_seqs": 1})), (4, ORIGINAL)]
    assert job.result["ab"]["quality"]["candidate"]["precision_from"] == (
        "not stated, and the checkpoint is on the node"
    )
