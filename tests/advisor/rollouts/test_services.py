"""Proposing and acting on rollouts: validation naming the field, roles, one rollout per node,
the second approver, starting only on serving nodes, proposals from recommendations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from advisor.models import (
    Assessment,
    ConfigChange,
    DeploymentSlo,
    Rollout,
    RolloutTarget,
)
from advisor.services.rollouts import (
    RolloutError,
    rollout_abort,
    rollout_approve,
    rollout_propose,
    rollout_start,
)
from probes.models import Gpu
from probes.roles import ADMIN
from tests.advisor.rollouts.helpers import Agent, fleet

pytestmark = pytest.mark.django_db

CHANGE = {"title": "bigger batches", "engine_args": {"max_num_seqs": 512}}


def _error(call: Any, **kwargs: Any) -> RolloutError:
    with pytest.raises(RolloutError) as error:
        call(**kwargs)
    return error.value


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"engine_args": {}}, "change.title", "required"),
        ({"title": "x", "engine_args": {}}, "change", "changes nothing"),
        ({"title": "x", "engine_args": {"Max-Num-Seqs": 8}}, "change.engine_args.Max-Num-Seqs",
         "not an engine arg name"),
        ({"title": "x", "engine_args": {"port": 1}}, "change.engine_args.port", "set by the node"),
        ({"title": "x", "engine_args": {"max_num_seqs": [1]}}, "change.engine_args.max_num_seqs",
         "expected a number"),
        ({"title": "x", "replicas": -1}, "change.replicas", "0..1000"),
        ({"title": "x", "autoscaling": {"kind": "ScaledObject"}}, "change.autoscaling",
         "HorizontalPodAutoscaler"),
        ({"title": "x", "engine_args": {"a": 1}, "projection": {"baseline": {"gpus": 2}}},
         "projection.projected", "required"),
        ({"title": "x", "engine_args": {"a": 1},
          "projection": {"baseline": {"gpus": 2, "usd_per_hour": 8}, "projected": {"gpus": -1}}},
         "projection.projected.gpus", ">= 0"),
        ({"title": "x", "engine_args": {"a": 1}, "colour": "red"}, "change.colour", "unknown"),
    ],
)  # fmt: skip
def test_it_names_the_bad_field_and_stores_nothing(
    bob: User, change: dict[str, Any], field: str, message: str
) -> None:
    nodes = fleet(1).nodes
    error = _error(rollout_propose, user=bob, nodes=[nodes[0].id], change=change)
    assert error.field == field
    assert message in error.message
    assert not Rollout.objects.exists()
    assert not ConfigChange.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nodes": [999]}, "nodes[0]"),
        ({"nodes": "all"}, "nodes"),
        ({"nodes": []}, "nodes"),
        ({"strategy": {"max_unavailable": 0}}, "strategy.max_unavailable"),
        ({"strategy": {"bake_s": 1.5}}, "strategy.bake_s"),
        ({"strategy": {"speed": 1}}, "strategy.speed"),
        ({"gates": {"ttft_p95_s": 0}}, "gates.ttft_p95_s"),
        ({"gates": {"max_error_rate": 2}}, "gates.max_error_rate"),
        ({"gates": {"p99": 1}}, "gates.p99"),
    ],
)
def test_it_checks_where_and_how(bob: User, kwargs: dict[str, Any], field: str) -> None:
    nodes = fleet(1).nodes
    args = {"nodes": [nodes[0].id], **kwargs}
    error = _error(rollout_propose, user=bob, change=CHANGE, **args)
    assert error.field == field
    assert not Rollout.objects.exists()


def test_gates_default_to_the_deployment_slo_and_say_which_are_defaults(bob: User) -> None:
    f = fleet(2)
    gpu = Gpu.objects.create(node=f.nodes[1], uuid="G1", index=0, model_name="NVIDIA L4",
                             memory_bytes=24 * 2**30)  # fmt: skip
    f.deployment.gpus.set([gpu])
    DeploymentSlo.objects.create(deployment=f.deployment, ttft_p95_s=0.8)
    rollout = rollout_propose(user=bob, deployment_id=f.deployment.id, change=CHANGE)
    assert [t.node.hostname for t in rollout.targets.all()] == ["gpu-1"]  # its nodes only
    assert rollout.gates["ttft_p95_s"] == 0.8
    assert rollout.gates["tpot_p95_s"] == 0.1
    assert rollout.gates["defaults"] == ["tpot_p95_s", "max_error_rate", "min_requests"]


def test_a_second_rollout_to_a_node_is_refused_saying_which_rollout_holds_it(bob: User) -> None:
    nodes = fleet(3).nodes
    first = rollout_propose(user=bob, nodes=[nodes[0].id, nodes[1].id], change=CHANGE)
    error = _error(rollout_propose, user=bob, nodes=[nodes[2].id, nodes[1].id], change=CHANGE)
    assert error.status == 409
    assert error.message == (
        f"node gpu-1 is already in rollout #{first.id} (pending); "
        "wait until it is over or abort it first"
    )
    assert Rollout.objects.count() == 1
    assert ConfigChange.objects.count() == 1  # the refused one left nothing behind


def test_the_database_refuses_two_active_targets_for_one_node(bob: User) -> None:
    nodes = fleet(1).nodes
    first = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    second = Rollout.objects.create(change=first.change)
    with pytest.raises(IntegrityError), transaction.atomic():
        RolloutTarget.objects.create(rollout=second, node=nodes[0], position=0, batch=0)


def test_a_node_is_free_again_once_its_rollout_is_over(bob: User, alice: User) -> None:
    nodes = fleet(1).nodes
    first = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    rollout_abort(user=alice, rollout_id=first.id)
    assert rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE).id != first.id


def test_only_admins_act_and_viewers_cannot_propose(alice: User, bob: User, carol: User) -> None:
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    assert _error(rollout_propose, user=carol, nodes=[nodes[0].id], change=CHANGE).status == 403
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    for call in (rollout_start, rollout_abort, rollout_approve):
        error = _error(call, user=bob, rollout_id=rollout.id)
        assert (error.status, error.field) == (403, "(role)")
    assert Rollout.objects.get(id=rollout.id).status == "pending"
    assert rollout_start(user=alice, rollout_id=rollout.id).status == "canary"


def test_with_a_second_approver_one_admin_cannot_push_a_change_alone(
    settings: Any, alice: User, bob: User
) -> None:
    settings.ROLLOUT_SECOND_APPROVER = True
    dora = User.objects.create_user("dora", "d@example.org", "pw")
    dora.groups.add(Group.objects.get(name=ADMIN))
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    rollout = rollout_propose(user=alice, nodes=[nodes[0].id], change=CHANGE)
    assert "must approve" in _error(rollout_start, user=alice, rollout_id=rollout.id).message
    assert "own rollout" in _error(rollout_approve, user=alice, rollout_id=rollout.id).message
    rollout_approve(user=dora, rollout_id=rollout.id, note="looked at the projection")
    assert "four eyes" in _error(rollout_start, user=dora, rollout_id=rollout.id).message
    started = rollout_start(user=alice, rollout_id=rollout.id)
    assert started.status == "canary"
    assert started.approved_by == dora
    kinds = list(started.events.values_list("kind", "actor_label"))
    assert ("approval", "dora") in kinds


def test_it_does_not_start_on_a_node_that_is_silent_or_down(alice: User, bob: User) -> None:
    nodes = fleet(2).nodes
    rollout = rollout_propose(user=bob, nodes=[n.id for n in nodes], change=CHANGE)
    error = _error(rollout_start, user=alice, rollout_id=rollout.id)
    assert (error.status, error.message.split(" has ")[0]) == (409, "node gpu-0")
    Agent(nodes[0]).report()
    Agent(nodes[1]).report()
    stale = nodes[1]
    stale.refresh_from_db()
    stale.observed_config["received_at"] -= 600  # the server heard it 10 minutes ago
    stale.save()
    assert (
        "last reported 600 s ago"
        in _error(rollout_start, user=alice, rollout_id=rollout.id).message
    )
    Agent(nodes[1], started_at=2000.0).report(state="down")
    assert (
        "is down, not serving" in _error(rollout_start, user=alice, rollout_id=rollout.id).message
    )
    assert Rollout.objects.get(id=rollout.id).status == "pending"


def test_a_done_rollout_cannot_start_again(alice: User, bob: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    rollout_abort(user=alice, rollout_id=rollout.id)
    Agent(nodes[0]).report()
    error = _error(rollout_start, user=alice, rollout_id=rollout.id)
    assert (error.status, error.field) == (409, "status")
    assert "an aborted rollout cannot become canary" in error.message.replace(
        "a aborted", "an aborted"
    )


def _assessment(f: Any) -> Assessment:
    result = {
        "strategy": "quantization", "deployment": "llama", "status": "recommended",
        "summary": "AWQ int4 fits on 1 GPU instead of 2",
        "baseline": {"gpus": 2.0, "busy_fraction": 0.3, "ttft_p95_s": 0.4, "tpot_p95_s": 0.03,
                     "usd_per_hour": 8.0, "usd_per_1m_output_tokens": 2.5,
                     "output_tokens_per_s": 900.0},
        "projected": {"gpus": 1.0, "busy_fraction": 0.55, "ttft_p95_s": 0.5, "tpot_p95_s": 0.035,
                      "usd_per_hour": 4.0, "usd_per_1m_output_tokens": 1.25,
                      "output_tokens_per_s": 900.0},
        "config_change": {"engine_args": {"--quantization": "awq_marlin", "--max-num-seqs": 256},
                          "model_path": "/models/llama-awq", "replicas": None,
                          "tensor_parallel": 1, "env": {}, "manifests": {}, "notes": []},
    }  # fmt: skip
    return Assessment.objects.create(
        cluster=f.cluster, window_start=timezone.now() - timedelta(days=7),
        window_end=timezone.now(), status="completed",
        strategies={"llama": {"quantization": result}},
    )  # fmt: skip


def test_a_recommendation_becomes_a_change_that_keeps_its_projection(bob: User) -> None:
    f = fleet(1)
    assessment = _assessment(f)
    rollout = rollout_propose(
        user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": assessment.id, "deployment": f.deployment.id,
                        "strategy": "quantization"},
    )  # fmt: skip
    change = rollout.change
    assert (change.source, change.strategy, change.assessment) == (
        "recommendation", "quantization", assessment)  # fmt: skip
    assert change.engine_args == {"quantization": "awq_marlin", "max_num_seqs": 256,
                                  "tensor_parallel_size": 1}  # fmt: skip
    assert change.model_path == "/models/llama-awq"
    assert change.projection["baseline"] == {
        "gpus": 2.0, "util_pct": 30.0, "throughput_tok_s": 900.0, "ttft_p95_s": 0.4,
        "tpot_p95_s": 0.03, "usd_per_hour": 8.0, "usd_per_1m_tokens": 2.5,
    }  # fmt: skip
    assert change.projection["projected"]["usd_per_1m_tokens"] == 1.25
    assert change.title == "AWQ int4 fits on 1 GPU instead of 2"


def test_a_missing_recommendation_is_named(bob: User) -> None:
    f = fleet(1)
    assessment = _assessment(f)
    error = _error(
        rollout_propose, user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": assessment.id, "deployment": f.deployment.id,
                        "strategy": "speculative"},
    )  # fmt: skip
    assert error.field == "recommendation.strategy"
    assert "no 'speculative' result for llama" in error.message


def test_replicas_and_autoscaling_need_kubernetes_nodes(bob: User) -> None:
    nodes = fleet(2).nodes
    nodes[1].controller_kind = "kubernetes"
    nodes[1].save()
    change = {"title": "scale", "replicas": 3}
    error = _error(rollout_propose, user=bob, nodes=[n.id for n in nodes], change=change)
    assert error.field == "change.replicas"
    assert error.message == (
        "gpu-0 run(s) one local vLLM process (no replicas to scale): leave replicas and "
        "autoscaling empty and scale by hand, or choose nodes with the kubernetes controller"
    )
    assert not Rollout.objects.exists()
    assert rollout_propose(user=bob, nodes=[nodes[1].id], change=change).change.replicas == 3


HPA = (
    "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: llama}\n"
    "spec: {minReplicas: 1, maxReplicas: 3}\n"
)
SPEC = '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4}'
PROJECTIONS = {
    "baseline": {"gpus": 3.0, "usd_per_hour": 12.0, "output_tokens_per_s": 900.0},
    "projected": {"gpus": 2.0, "usd_per_hour": 8.0, "output_tokens_per_s": 900.0},
}
# As the engine stores them: each sizes replicas; the plan also autoscales.
RESULTS = {
    "plan": {"deployment": "llama", "status": "ok", "message": "[batching] seqs 512",
             "baseline": PROJECTIONS["baseline"], "plan": PROJECTIONS["projected"],
             "config_change": {"engine_args": {"--max-num-seqs": 512}, "replicas": 2,
                               "manifests": {"hpa.yaml": HPA}}},
    "quantization": {"summary": "fp8 on 2 GPUs", **PROJECTIONS,
                     "config_change": {"engine_args": {"--quantization": "fp8"},
                                       "model_path": "/models/llama-fp8", "replicas": 2}},
    "batching": {"summary": "seqs 512 on 2 GPUs", **PROJECTIONS,
                 "config_change": {"engine_args": {"--max-num-seqs": 512}, "replicas": 2}},
    "speculative": {"summary": "ngram on 2 GPUs", **PROJECTIONS,
                    "config_change": {"engine_args": {"--speculative-config": SPEC},
                                      "replicas": 2}},
    "autoscaling": {"summary": "HPA 1..3", **PROJECTIONS,
                    "config_change": {"engine_args": {}, "replicas": 1,
                                      "manifests": {"hpa.yaml": HPA}}},
}  # fmt: skip
APPLIED = {
    "plan": ({"max_num_seqs": 512}, ""),
    "quantization": ({"quantization": "fp8"}, "/models/llama-fp8"),
    "batching": ({"max_num_seqs": 512}, ""),
    "speculative": ({"speculative_config": SPEC}, ""),
}
REPLICAS_STEP = {
    "title": "Run 2 replica(s) of llama",
    "detail": "gpu-0 run(s) one local vLLM process each, which this rollout updates in place; "
    "start or stop vLLM processes by hand (each with this change's engine args) until llama "
    "has 2 replica(s).",
    "manifest": "",
}


def _recommending(f: Any) -> Assessment:
    strategies = {k: v for k, v in RESULTS.items() if k != "plan"}
    return Assessment.objects.create(
        cluster=f.cluster, window_start=timezone.now() - timedelta(days=7),
        window_end=timezone.now(), status="completed",
        plan={"deployments": [RESULTS["plan"]]}, strategies={"llama": strategies},
    )  # fmt: skip


@pytest.mark.parametrize("strategy", ["plan", "quantization", "batching", "speculative"])
def test_it_applies_a_recommendations_per_replica_part_to_a_local_node(
    bob: User, strategy: str
) -> None:
    """Replicas and autoscaling become manual steps; engine args and the model are applied."""
    f = fleet(1)
    assessment = _recommending(f)
    rollout = rollout_propose(
        user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": assessment.id, "deployment": f.deployment.id,
                        "strategy": strategy},
    )  # fmt: skip
    change = rollout.change
    engine_args, model_path = APPLIED[strategy]
    assert (change.engine_args, change.model_path) == (engine_args, model_path)
    assert (change.replicas, change.autoscaling) == (None, {})
    assert change.node_config() == {
        "engine_args": engine_args, **({"model": model_path} if model_path else {}),
    }  # fmt: skip
    if strategy != "plan":
        assert change.manual_steps == [REPLICAS_STEP]
        return
    replicas, hpa = change.manual_steps
    assert replicas == REPLICAS_STEP
    assert hpa["title"] == "Autoscale llama as the recommendation says"
    assert hpa["manifest"] == (
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: llama\n"
        "spec:\n  minReplicas: 1\n  maxReplicas: 3\n"
    )


def test_on_kubernetes_nodes_a_recommendation_keeps_its_replicas(bob: User) -> None:
    f = fleet(1)
    f.nodes[0].controller_kind = "kubernetes"
    f.nodes[0].save()
    rollout = rollout_propose(
        user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": _recommending(f).id, "deployment": f.deployment.id,
                        "strategy": "plan"},
    )  # fmt: skip
    assert (rollout.change.replicas, rollout.change.autoscaling["kind"]) == (
        2, "HorizontalPodAutoscaler")  # fmt: skip
    assert rollout.change.manual_steps == []


def test_a_recommendation_that_only_scales_is_refused_on_a_local_node_saying_what_to_do(
    bob: User,
) -> None:
    f = fleet(1)
    error = _error(
        rollout_propose, user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": _recommending(f).id, "deployment": f.deployment.id,
                        "strategy": "autoscaling"},
    )  # fmt: skip
    assert (error.field, error.message) == (
        "recommendation",
        "it only changes replicas or autoscaling, which gpu-0 cannot apply (one local vLLM "
        "process each): scale by hand (see the plan's manifests), or choose nodes with the "
        "kubernetes controller",
    )
    assert not ConfigChange.objects.exists()


def test_a_recommendation_without_a_deployment_says_which_to_choose(bob: User) -> None:
    f = fleet(1)
    assessment = _recommending(f)
    error = _error(
        rollout_propose, user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": assessment.id, "deployment": None, "strategy": "plan"},
    )  # fmt: skip
    assert (error.field, error.message) == (
        "recommendation.deployment",
        f"choose the deployment whose recommendation to apply (assessment #{assessment.id} "
        "has recommendations for llama)",
    )
    assert not Rollout.objects.exists()
    assert not ConfigChange.objects.exists()


def test_a_refused_start_is_audited_and_says_what_to_do(alice: User, bob: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    error = _error(rollout_start, user=alice, rollout_id=rollout.id, note="go")
    message = (
        "node gpu-0 has never reported a controller state, so nothing would apply the change: "
        "run its agent with --controller-config (README, Rollouts; on the demo, `make "
        "demo-node`), wait until the node page shows its controller serving, then start again"
    )
    assert (error.status, error.field, error.message) == (409, "nodes", message)
    refused = rollout.events.get(kind="refused")
    assert (refused.actor, refused.message) == (alice, f"start refused: {message}")
    assert refused.data == {"action": "start", "field": "nodes", "status": 409}
    assert Rollout.objects.get(id=rollout.id).status == "pending"
    assert not rollout.events.filter(to_status="canary").exists()


def test_a_plan_that_moves_to_another_gpu_kind_is_refused_saying_what_to_do(bob: User) -> None:
    f = fleet(1)
    f.nodes[0].controller_kind = "kubernetes"
    f.nodes[0].save()
    move = {
        **RESULTS["plan"],
        "config_change": {"engine_args": {"--quantization": "fp8"}, "replicas": 2,
                          "hardware": "L4", "manifests": {"llama-l4-nodes.yaml": "kind: x\n"}},
    }  # fmt: skip
    assessment = Assessment.objects.create(
        cluster=f.cluster, window_start=timezone.now() - timedelta(days=7),
        window_end=timezone.now(), status="completed", plan={"deployments": [move]},
    )  # fmt: skip
    error = _error(
        rollout_propose, user=bob, nodes=[f.nodes[0].id],
        recommendation={"assessment": assessment.id, "deployment": f.deployment.id,
                        "strategy": "plan"},
    )  # fmt: skip
    assert (error.field, error.message) == (
        "recommendation",
        f"assessment #{assessment.id} plan for llama moves the deployment to L4 GPUs, which a "
        "rollout cannot do: it changes engine args, model, replicas and autoscaling on the "
        "nodes the deployment has. Provision the L4 nodes the plan names, apply its "
        "Deployment patch (llama-l4-nodes.yaml) there, then release the old GPUs; or apply a "
        "strategy's recommendation, which keeps today's GPUs",
    )
    assert not ConfigChange.objects.exists()
    assert not Rollout.objects.exists()
