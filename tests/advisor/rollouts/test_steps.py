"""The rollout state machine driven step by step, agents played by `helpers.Agent` reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from advisor.models import LedgerEntry, Rollout, RolloutTarget
from advisor.services.rollout_steps import rollout_advance
from advisor.services.rollouts import (
    rollout_abort,
    rollout_pause,
    rollout_propose,
    rollout_resume,
    rollout_rollback,
    rollout_start,
)
from tests.advisor.rollouts.helpers import Agent, fleet, statuses, transitions

pytestmark = pytest.mark.django_db

CHANGE = {"title": "bigger batches", "engine_args": {"max_num_seqs": 512}}
PROJECTION = {
    "baseline": {"gpus": 3, "usd_per_hour": 12.0, "usd_per_1m_tokens": 2.0},
    "projected": {"gpus": 2, "usd_per_hour": 8.0, "usd_per_1m_tokens": 1.2},
}


class Run:
    """A started rollout over agents, with a test clock."""

    def __init__(self, bob: User, alice: User, *, nodes: int = 3, **strategy: Any) -> None:
        self.fleet = fleet(nodes)
        self.t = timezone.now()
        self.agents = [Agent(node) for node in self.fleet.nodes]
        for agent in self.agents:
            agent.report(at=self.t)
        options = {"max_unavailable": 1, "canary_bake_s": 60, "bake_s": 30,
                   "apply_timeout_s": 300, **strategy}  # fmt: skip
        self.rollout = rollout_propose(
            user=bob,
            nodes=[n.id for n in self.fleet.nodes],
            change={**CHANGE, "projection": PROJECTION},
            strategy=options,
            gates={"ttft_p95_s": 0.5, "tpot_p95_s": 0.05},
            reason="assessment says so",
        )
        rollout_start(user=alice, rollout_id=self.rollout.id, note="go")

    def at(self, seconds: float) -> datetime:
        return self.t + timedelta(seconds=seconds)

    def step(self, seconds: float) -> float | None:
        return rollout_advance(rollout_id=self.rollout.id, now=self.at(seconds))

    @property
    def fresh(self) -> Rollout:
        return Rollout.objects.get(id=self.rollout.id)

    def bake(self, index: int, start_s: float, bake_s: float, **report: Any) -> None:
        """Agent `index` applies its new generation at start_s and serves through the bake."""
        agent = self.agents[index]
        agent.apply_desired(at=self.at(start_s))
        self.step(start_s + 1)
        agent.report(at=self.at(start_s + bake_s + 2), more_requests=20, **report)
        self.step(start_s + bake_s + 3)


def test_it_walks_canary_then_one_node_at_a_time_to_done(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    assert run.step(1) == pytest.approx(2.0)
    assert statuses(run.fresh) == ["applying", "pending", "pending"]
    canary = run.agents[0].desired()
    assert canary["config"] == {"engine_args": {"max_num_seqs": 512}}
    assert canary["generation"] == 1
    assert canary["rollout_id"] == run.rollout.id
    assert canary["probe_interval_s"] > 0

    run.bake(0, 2, 60)
    assert run.fresh.status == "progressing"
    assert statuses(run.fresh) == ["verified", "applying", "pending"]  # max_unavailable 1
    run.bake(1, 70, 30)
    assert statuses(run.fresh) == ["verified", "verified", "applying"]
    run.bake(2, 110, 30)
    assert run.step(150) is None
    rollout = run.fresh
    assert rollout.status == "done"
    assert statuses(rollout) == ["verified"] * 3
    assert transitions(rollout) == [
        ("", "pending"), ("pending", "canary"), ("canary", "progressing"),
        ("progressing", "done"),
    ]  # fmt: skip
    assert not RolloutTarget.objects.filter(rollout=rollout, active=True).exists()
    who = list(rollout.events.filter(kind="transition").values_list("actor_label", "message"))
    assert who[:2] == [("bob", "assessment says so"), ("alice", "go")]
    ledger = LedgerEntry.objects.get(rollout=rollout)
    assert ledger.projection == PROJECTION
    assert ledger.status == "waiting"
    assert ledger.slo == {"ttft_p95_s": 0.5, "tpot_p95_s": 0.05}
    gates = rollout.targets.get(position=0).gate_results
    assert gates["passed"] is True
    assert {g["name"] for g in gates["results"]} == {
        "health", "requests", "error_rate", "probe_error_rate", "ttft_p95", "tpot_p95"
    }  # fmt: skip


def test_it_applies_batches_of_max_unavailable_after_the_canary(bob: User, alice: User) -> None:
    run = Run(bob, alice, nodes=3, max_unavailable=2)
    run.step(1)
    run.bake(0, 2, 60)
    assert statuses(run.fresh) == ["verified", "applying", "applying"]


def test_it_rolls_back_when_the_canary_cannot_apply(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    generation = run.agents[0].fail_desired("vLLM did not start: max_model_len too large",
                                            at=run.at(20))  # fmt: skip
    run.step(21)
    rollout = run.fresh
    assert rollout.status == "rolling_back"
    assert "max_model_len too large" in rollout.outcome
    assert statuses(rollout) == ["rolling_back", "untouched", "untouched"]
    run.step(22)  # writes the restore generation
    restore = run.agents[0].desired()
    assert restore["generation"] == generation + 1
    assert restore["config"] == {"engine_args": {}}  # what the node reported running before
    run.agents[0].apply_desired(at=run.at(23))  # the agent adopts it (same config)
    assert run.step(24) is None
    rollout = run.fresh
    assert rollout.status == "rolled_back"
    assert statuses(rollout) == ["rolled_back", "untouched", "untouched"]
    # The other nodes were never told anything.
    for agent in run.agents[1:]:
        assert agent.desired() == {}


def test_it_rolls_back_when_a_latency_gate_fails_at_the_end_of_the_bake(
    bob: User, alice: User
) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.bake(0, 2, 60, ttft_s=0.9)  # over the 0.5 s SLO
    rollout = run.fresh
    assert rollout.status == "rolling_back"
    target = rollout.targets.get(position=0)
    assert target.status == "rolling_back"
    failed = [g for g in target.gate_results["results"] if not g["passed"]]
    assert [g["name"] for g in failed] == ["ttft_p95"]
    assert failed[0]["value"] == pytest.approx(0.9, rel=0.5)
    assert "ttft_p95" in rollout.outcome


def test_it_fails_the_bake_at_once_when_vllm_exits(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.agents[0].apply_desired(at=run.at(2))
    run.step(3)
    assert statuses(run.fresh)[0] == "baking"
    run.agents[0].restarts += 1
    run.agents[0].report(at=run.at(10), state="down", detail="vLLM exited with status -9")
    run.step(11)  # long before the 60 s bake ends
    rollout = run.fresh
    assert rollout.status == "rolling_back"
    assert "vLLM exited during the bake" in rollout.outcome


def test_it_fails_a_node_that_never_applies_within_the_timeout(bob: User, alice: User) -> None:
    run = Run(bob, alice, apply_timeout_s=60)
    run.step(1)
    run.agents[0].report(at=run.at(30), state="applying", healthy=False)
    run.step(31)
    assert run.fresh.status == "canary"
    run.step(62)
    assert run.fresh.status == "rolling_back"
    assert "within 60 s" in run.fresh.outcome


def test_it_ends_failed_when_a_node_cannot_be_restored(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.agents[0].fail_desired("boom", at=run.at(5))
    run.step(6)
    run.step(7)
    run.agents[0].fail_desired("previous config does not start either", at=run.at(8))
    assert run.step(9) is None
    rollout = run.fresh
    assert rollout.status == "failed"
    assert "previous config does not start either" in rollout.outcome


def test_repeating_a_step_writes_each_generation_once(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.step(1)
    run.step(2)
    assert run.agents[0].desired()["generation"] == 1
    events = run.fresh.events.filter(kind="target").count()
    assert events == 1


def test_it_waits_for_a_verified_node_that_stopped_serving_before_the_next_batch(
    bob: User, alice: User
) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.bake(0, 2, 60)
    run.agents[1].apply_desired(at=run.at(70))
    run.step(71)
    run.agents[0].report(at=run.at(90), state="down", detail="vLLM exited with status 1")
    run.agents[1].report(at=run.at(103), more_requests=20)
    run.step(104)
    # Node 1 passed, but node 0 is down: taking node 2 down too would exceed max_unavailable.
    assert statuses(run.fresh) == ["verified", "verified", "pending"]
    run.agents[0].report(at=run.at(110))
    run.step(111)
    assert statuses(run.fresh) == ["verified", "verified", "applying"]


def test_pause_holds_the_next_batch_and_resume_goes_on(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.agents[0].apply_desired(at=run.at(2))
    run.step(3)
    rollout_pause(user=alice, rollout_id=run.rollout.id, note="lunch")
    run.agents[0].report(at=run.at(64), more_requests=20)
    assert run.step(65) is None  # the bake still ends...
    assert statuses(run.fresh) == ["verified", "pending", "pending"]  # ...nothing new starts
    rollout_resume(user=alice, rollout_id=run.rollout.id)
    run.step(66)
    assert statuses(run.fresh) == ["verified", "applying", "pending"]
    kinds = list(run.fresh.events.values_list("kind", flat=True))
    assert "pause" in kinds
    assert "resume" in kinds


def test_abort_leaves_nodes_as_they_are_and_frees_them(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    rollout_abort(user=alice, rollout_id=run.rollout.id, note="wrong change")
    rollout = run.fresh
    assert rollout.status == "aborted"
    assert statuses(rollout) == ["applying", "untouched", "untouched"]
    assert not RolloutTarget.objects.filter(rollout=rollout, active=True).exists()
    assert run.step(2) is None
    assert run.agents[0].desired()["generation"] == 1  # no restore: that is what rollback does


def test_an_admin_rolls_back_a_verified_canary(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.bake(0, 2, 60)
    rollout_rollback(user=alice, rollout_id=run.rollout.id, note="latency looks odd")
    assert run.fresh.status == "rolling_back"
    # Agents apply whatever is newly desired; one node is restored at a time (max_unavailable).
    second = 70
    while run.step(second) is not None:
        assert sum(t.rollback_generation is not None and t.status == "rolling_back"
                   for t in run.fresh.targets.all()) <= 1  # fmt: skip
        for agent in run.agents:
            if agent.desired().get("generation", 0) > agent.generation:
                agent.apply_desired(at=run.at(second))
        second += 1
        assert second < 90
    rollout = run.fresh
    assert rollout.status == "rolled_back"
    assert statuses(rollout) == ["rolled_back", "rolled_back", "untouched"]
    assert ("progressing", "rolling_back") in transitions(rollout)
    event = rollout.events.get(to_status="rolling_back")
    assert (event.actor_label, event.message) == ("alice", "latency looks odd")


def test_the_verdict_waits_for_a_report_with_counters(bob: User, alice: User) -> None:
    run = Run(bob, alice)
    run.step(1)
    run.agents[0].apply_desired(at=run.at(2))
    run.step(3)
    run.agents[0].report(at=run.at(64), more_requests=20)
    node = run.fleet.nodes[0]
    node.refresh_from_db()
    node.observed_config["metrics"] = None  # the agent's scrape timed out this once
    node.save()
    run.step(65)
    assert statuses(run.fresh)[0] == "baking"
    run.agents[0].report(at=run.at(66))
    run.step(67)
    assert statuses(run.fresh)[0] == "verified"
