"""The rollout task's lease: one chain advances a rollout; a dead chain's lease lapses."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from advisor.models import Rollout
from advisor.services.rollouts import rollout_propose, rollout_start
from advisor.tasks.rollout import advance, resume, watchdog
from tests.advisor.rollouts.helpers import Agent, fleet

pytestmark = pytest.mark.django_db
CHANGE = {"title": "bigger batches", "engine_args": {"max_num_seqs": 512}}


def _started(bob: User, alice: User) -> Rollout:
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    rollout_start(user=alice, rollout_id=rollout.id)
    return rollout


def test_only_the_lease_holder_advances(bob: User, alice: User) -> None:
    rollout = _started(bob, alice)
    assert advance(rollout.id, "chain-a").startswith("next step due")
    held = Rollout.objects.get(id=rollout.id)
    assert held.lease_owner == "chain-a"
    assert held.lease_until is not None
    assert held.lease_until > timezone.now()
    assert held.targets.get().status == "applying"
    assert advance(rollout.id, "chain-b") == "not claimed (over, gone, or another worker holds it)"
    assert advance(rollout.id, "chain-a").startswith("next step due")  # its own continuation
    Rollout.objects.filter(id=rollout.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert advance(rollout.id, "chain-b").startswith("next step due")  # a lapsed lease is free
    assert Rollout.objects.get(id=rollout.id).lease_owner == "chain-b"


def test_a_pending_or_finished_rollout_is_not_advanced(bob: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    assert advance(rollout.id).startswith("not claimed")
    assert Rollout.objects.get(id=rollout.id).targets.get().status == "pending"


def test_a_failing_step_lets_its_lease_lapse_soon(bob: User, alice: User) -> None:
    rollout = _started(bob, alice)
    with (
        mock.patch("advisor.tasks.rollout.rollout_advance", side_effect=RuntimeError("db gone")),
        pytest.raises(RuntimeError),
    ):
        advance(rollout.id, "chain-a")
    lease = Rollout.objects.get(id=rollout.id).lease_until
    assert lease is not None
    assert lease < timezone.now() + timedelta(seconds=20)


def test_resume_and_the_watchdog_pick_up_started_rollouts(bob: User, alice: User) -> None:
    rollout = _started(bob, alice)
    assert resume() == 1
    assert Rollout.objects.get(id=rollout.id).targets.get().status == "applying"
    assert watchdog() == {"resumed": 1, "measured": 0}
