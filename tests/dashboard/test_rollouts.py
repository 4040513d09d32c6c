"""Rollout pages: who sees what, proposing through the form, admin-only actions (403 else)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from advisor.models import LedgerEntry, Rollout
from advisor.services.rollouts import rollout_propose
from tests.advisor.rollouts.helpers import Agent, fleet

pytestmark = pytest.mark.django_db
CHANGE = {"title": "bigger batches", "engine_args": {"max_num_seqs": 512}}
FLAG = "below_half: realized 6.2% savings on usd_per_hour is under half the projected 50.0%"


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_reads_but_sees_no_controls(bob: User, carol: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE, reason="cheaper")
    page = _as(carol).get("/rollouts/")
    assert page.status_code == 200
    assert b"bigger batches" in page.content
    assert b'data-testid="propose-link"' not in page.content
    detail = _as(carol).get(f"/rollouts/{rollout.id}/")
    assert detail.status_code == 200
    assert b'data-testid="rollout-actions"' not in detail.content
    assert b"cheaper" in detail.content  # the audit trail says why
    assert _as(carol).get("/rollouts/new/").status_code == 403
    assert b'href="/rollouts/"' in page.content  # the nav entry


@pytest.mark.parametrize("who", ["carol", "bob"])
def test_a_viewer_or_operator_cannot_start_a_rollout_from_the_page(
    who: str, bob: User, carol: User
) -> None:
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    user = {"bob": bob, "carol": carol}[who]
    response = _as(user).post(f"/rollouts/{rollout.id}/", {"action": "start"})
    assert response.status_code == 403
    assert Rollout.objects.get(id=rollout.id).status == "pending"
    assert b'data-testid="start"' not in _as(user).get(f"/rollouts/{rollout.id}/").content


def test_an_operator_proposes_through_the_form(bob: User) -> None:
    nodes = fleet(2).nodes
    response = _as(bob).post("/rollouts/new/", {
        "source": "manual", "title": "more seqs", "engine_args": '{"max_num_seqs": 256}',
        "nodes": [str(nodes[1].id), str(nodes[0].id)], "bake_s": "120", "gate_ttft_p95_s": "0.5",
        "reason": "from the assessment",
    })  # fmt: skip
    rollout = Rollout.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/rollouts/{rollout.id}/"
    assert rollout.change.engine_args == {"max_num_seqs": 256}
    assert rollout.bake_s == 120
    assert rollout.gates["ttft_p95_s"] == 0.5
    # The canary is the first node posted (a browser posts selected options in page order).
    assert [t.node.hostname for t in rollout.targets.all()] == ["gpu-1", "gpu-0"]


def test_the_form_names_the_bad_field_and_stores_nothing(bob: User) -> None:
    nodes = fleet(1).nodes
    response = _as(bob).post("/rollouts/new/", {
        "source": "manual", "title": "x", "engine_args": "{max_num_seqs: 1}",
        "nodes": [str(nodes[0].id)],
    })  # fmt: skip
    assert response.status_code == 400
    assert b"change.engine_args: not valid JSON" in response.content
    assert not Rollout.objects.exists()


def test_an_admin_starts_it_from_the_page(alice: User, bob: User) -> None:
    nodes = fleet(1).nodes
    Agent(nodes[0]).report()
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    page = _as(alice).get(f"/rollouts/{rollout.id}/")
    assert b'data-testid="start"' in page.content
    response = _as(alice).post(f"/rollouts/{rollout.id}/", {"action": "start", "note": "go"})
    assert response.status_code == 302
    assert Rollout.objects.get(id=rollout.id).status == "canary"
    again = _as(alice).post(f"/rollouts/{rollout.id}/", {"action": "start"}, follow=True)
    assert b"status: a canary rollout cannot become canary" in again.content


def test_the_ledger_page_shows_flags(bob: User, carol: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    now = timezone.now()
    LedgerEntry.objects.create(
        rollout=rollout, window_s=3600, before_start=now - timedelta(hours=2),
        before_end=now - timedelta(hours=1), after_start=now - timedelta(hours=1), after_end=now,
        status="measured", before={"gpus": 2, "usd_per_hour": 8.0},
        after={"gpus": 2, "usd_per_hour": 7.5}, flagged=True,
        flags=[FLAG],
        realized={"projected_fraction": 0.5, "realized_fraction": 0.0625},
    )  # fmt: skip
    page = _as(carol).get("/rollouts/ledger/")
    assert page.status_code == 200
    assert b"below_half: realized 6.2%" in page.content
    assert b"50.0%" in page.content
    assert b"1 flagged" in _as(carol).get("/rollouts/").content
