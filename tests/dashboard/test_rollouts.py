"""Rollout pages: who sees what, proposing through the form, admin-only actions (403 else),
each node's args diff and the live status the page polls."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django.utils.html import strip_tags

from advisor.models import ConfigChange, LedgerEntry, Rollout
from advisor.services.rollout_steps import rollout_advance
from advisor.services.rollouts import rollout_propose, rollout_start
from dashboard.selectors.config_diff import ArgLine
from dashboard.selectors.rollouts import rollout_node_diffs
from tests.advisor.rollouts.helpers import Agent, fleet
from tests.advisor.rollouts.test_services import _recommending

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
    assert b"Engine args: not valid JSON" in response.content
    assert b'<textarea name="engine_args" aria-invalid="true"' in response.content
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
    shown = "Under half the projection: realized 6.2% savings on cost per hour is under half"
    assert shown.encode() in page.content
    assert b"below_half" not in page.content  # the flag's code and field names are not shown
    assert b"usd_per_hour" not in page.content
    assert b"50.0%" in page.content
    assert b"1 flagged" in _as(carol).get("/rollouts/").content


NODE_ARGS = {"max_num_seqs": 128, "enable_prefix_caching": True, "max_model_len": 4096}
NEW_ARGS = {"max_num_seqs": 512, "max_model_len": 4096, "enable_chunked_prefill": True}


def test_the_page_diffs_each_nodes_args_against_the_change(bob: User, carol: User) -> None:
    nodes = fleet(2).nodes
    reporting = Agent(nodes[0])
    reporting.config = {"engine_args": NODE_ARGS, "model": "m-fp16"}
    reporting.report()
    change = {"title": "fp8", "engine_args": NEW_ARGS, "model_path": "m-fp8"}
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id, nodes[1].id], change=change)
    diffs = rollout_node_diffs(rollout=rollout, targets=list(rollout.targets.all()))
    assert [(d.hostname, d.source) for d in diffs] == [
        ("gpu-0", "reported by the node"),
        ("gpu-1", "not known (the node has reported no config)"),
    ]
    # The change replaces the node's engine args: a flag only the node has is removed.
    assert diffs[0].args == (
        ArgLine("--enable-chunked-prefill", None, "(on)", "added"),
        ArgLine("--enable-prefix-caching", "(on)", None, "removed"),
        ArgLine("--max-model-len", "4096", "4096", "same"),
        ArgLine("--max-num-seqs", "128", "512", "changed"),
    )
    assert diffs[0].model_path == ("m-fp16", "m-fp8")
    assert diffs[1].args == (
        ArgLine("--enable-chunked-prefill", None, "(on)", "added"),
        ArgLine("--max-model-len", None, "4096", "added"),
        ArgLine("--max-num-seqs", None, "512", "added"),
    )
    assert diffs[1].model_path == (None, "m-fp8")
    html = _as(carol).get(f"/rollouts/{rollout.id}/").content.decode()
    section = html.split('data-testid="node-diffs"')[1].split("</section>")[0]
    first = section.split('data-testid="args-diff">')[1].split("</pre>")[0]
    assert first == (
        '<span class="add">+ --enable-chunked-prefill (on)</span>\n'
        '<span class="del">- --enable-prefix-caching (on)</span>\n'
        "  --max-model-len 4096\n"
        '<span class="del">- --max-num-seqs 128</span>\n'
        '<span class="add">+ --max-num-seqs 512</span>\n'
        '<span class="del">- model m-fp16</span>\n'
        '<span class="add">+ model m-fp8</span>\n'
    )
    assert 'gpu-1 <span class="muted">(not known (the node has reported no config))' in section


def test_a_touched_node_diffs_against_its_restore_point(alice: User, bob: User) -> None:
    nodes = fleet(1).nodes
    agent = Agent(nodes[0])
    agent.config = {"engine_args": NODE_ARGS}
    agent.report()
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    rollout_start(user=alice, rollout_id=rollout.id)
    rollout_advance(rollout_id=rollout.id)
    agent.apply_desired()  # the node now reports the change's args
    diffs = rollout_node_diffs(rollout=rollout, targets=list(rollout.targets.all()))
    assert diffs[0].source == "before this rollout (its restore point)"
    assert [(line.flag, line.kind) for line in diffs[0].args] == [
        ("--enable-prefix-caching", "removed"),
        ("--max-model-len", "removed"),
        ("--max-num-seqs", "changed"),
    ]


def test_the_status_json_says_the_step_the_nodes_and_the_latest_events(
    alice: User, bob: User, carol: User
) -> None:
    nodes = fleet(2).nodes
    for node in nodes:
        Agent(node).report()
    rollout = rollout_propose(
        user=bob, nodes=[n.id for n in nodes], change=CHANGE, reason="cheaper"
    )
    pending = _as(carol).get(f"/rollouts/{rollout.id}/status.json").json()
    assert (pending["status"], pending["step"], pending["batch"], pending["batches"]) == (
        "pending", "waiting for an admin to start it", None, 1,
    )  # fmt: skip
    rollout_start(user=alice, rollout_id=rollout.id, note="go")
    rollout_advance(rollout_id=rollout.id)  # the canary gets its desired config
    response = _as(carol).get(f"/rollouts/{rollout.id}/status.json")
    assert response.status_code == 200
    state = response.json()
    assert {k: state[k] for k in ("status", "status_label", "paused", "done", "outcome",
                                  "step", "batch", "batches")} == {
        "status": "canary", "status_label": "Canary", "paused": False, "done": False,
        "outcome": "", "step": "canary", "batch": 0, "batches": 1,
    }  # fmt: skip
    assert state["targets"] == [
        {"node_id": nodes[0].id, "node": "gpu-0", "batch": 0, "role": "canary",
         "status": "applying", "status_label": "Applying", "desired_generation": 1,
         "rollback_generation": None, "gates": [], "error": ""},
        {"node_id": nodes[1].id, "node": "gpu-1", "batch": 1, "role": "batch 1",
         "status": "pending", "status_label": "Pending", "desired_generation": None,
         "rollback_generation": None, "gates": [], "error": ""},
    ]  # fmt: skip
    events = [(e["actor"], e["kind"], e["from_status"], e["to_status"], e["node"])
              for e in state["events"]]  # fmt: skip
    assert events == [
        ("bob", "transition", "", "pending", ""),
        ("alice", "transition", "pending", "canary", ""),
        ("system", "target", "", "", "gpu-0"),
    ]
    assert state["events"][-1]["message"] == "gpu-0 (canary): desired config generation 1"
    assert [e["id"] for e in state["events"]] == sorted(e["id"] for e in state["events"])


def test_the_page_polls_the_status_only_while_the_rollout_is_not_over(
    alice: User, bob: User, carol: User
) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    page = _as(carol).get(f"/rollouts/{rollout.id}/").content.decode()
    assert f'data-rollout-status-url="/rollouts/{rollout.id}/status.json"' in page
    assert (
        '<script src="/static/js/poll.js" defer></script>'
        '<script src="/static/js/rollout.js" defer></script>'
    ) in page  # the shared polling loop first: rollout.js calls it
    _as(alice).post(f"/rollouts/{rollout.id}/", {"action": "abort", "note": "not now"})
    assert Rollout.objects.get(id=rollout.id).status == "aborted"
    over = _as(carol).get(f"/rollouts/{rollout.id}/").content.decode()
    assert "data-rollout-status-url" not in over
    assert "rollout.js" not in over
    assert "poll.js" not in over
    assert _as(carol).get(f"/rollouts/{rollout.id}/status.json").json()["done"] is True


def test_the_status_json_is_for_signed_in_roles_only(bob: User) -> None:
    rollout = rollout_propose(user=bob, nodes=[fleet(1).nodes[0].id], change=CHANGE)
    response = Client().get(f"/rollouts/{rollout.id}/status.json")
    assert response.status_code == 302
    assert _as(bob).get("/rollouts/999999/status.json").status_code == 404


def test_the_plan_form_left_empty_asks_for_the_deployment_by_its_label(bob: User) -> None:
    """As "Propose a rollout of the plan" opens it: assessment and plan chosen, nothing else."""
    f = fleet(1)
    assessment = _recommending(f)
    form = _as(bob).get(f"/rollouts/new/?assessment={assessment.id}&strategy=plan")
    assert b'<input type="radio" name="source" value="recommendation" checked>' in form.content
    response = _as(bob).post("/rollouts/new/", {
        "source": "recommendation", "assessment": str(assessment.id), "strategy_name": "plan",
    })  # fmt: skip
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        '<li class="error">Deployment: choose the deployment whose recommendation to apply '
        f"(assessment #{assessment.id} has recommendations for llama)</li>"
    ) in html
    assert '<select name="deployment" aria-invalid="true">' in html
    assert "recommendation.deployment" not in html
    assert "got None" not in html
    assert not Rollout.objects.exists()
    assert not ConfigChange.objects.exists()


def test_an_empty_form_asks_for_a_title_by_its_label(bob: User) -> None:
    response = _as(bob).post("/rollouts/new/", {})
    assert response.status_code == 400
    assert (
        b'<li class="error">Title: required: a title of at most 200 characters</li>'
        in response.content
    )
    assert not Rollout.objects.exists()


def test_a_plan_on_a_local_node_lists_its_replica_part_as_manual_steps(
    bob: User, carol: User
) -> None:
    f = fleet(1)
    assessment = _recommending(f)
    response = _as(bob).post("/rollouts/new/", {
        "source": "recommendation", "assessment": str(assessment.id), "strategy_name": "plan",
        "deployment": str(f.deployment.id), "nodes": [str(f.nodes[0].id)],
    })  # fmt: skip
    rollout = Rollout.objects.get()
    assert response["Location"] == f"/rollouts/{rollout.id}/"
    html = _as(carol).get(f"/rollouts/{rollout.id}/").content.decode()
    section = html.split('data-testid="manual-steps">')[1].split("</section>")[0]
    assert "<strong>Run 2 replica(s) of llama</strong>: gpu-0 run(s) one local" in section
    assert "<strong>Autoscale llama as the recommendation says</strong>" in section
    assert "kind: HorizontalPodAutoscaler" in section
    # What the node is sent: the per-replica part only.
    sent = "{\n  &quot;engine_args&quot;: {\n    &quot;max_num_seqs&quot;: 512\n  }\n}</pre>"
    assert sent in html


def test_a_start_refused_from_the_page_says_what_to_do_and_stays_in_the_trail(
    alice: User, bob: User
) -> None:
    nodes = fleet(1).nodes  # its agent never reported a controller state
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    page = _as(alice).post(f"/rollouts/{rollout.id}/", {"action": "start"}, follow=True)
    html = page.content.decode()
    why = "node gpu-0 has never reported a controller state, so nothing would apply the change"
    assert f'<li class="error">nodes: {why}' in html
    trail = html.split('data-testid="events"')[1]
    assert "<td>alice</td><td>refused</td><td></td><td>start refused: " + why in trail
    assert Rollout.objects.get(id=rollout.id).status == "pending"


def _visible(html: str) -> str:
    """The page's text as a reader sees it (no tags, attributes, scripts or <pre> blocks)."""
    html = re.sub(r"<(script|pre|code)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(strip_tags(html)))


RAW_NAMES = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")


def test_the_form_says_each_field_in_words_with_its_unit(bob: User) -> None:
    fleet(1)
    text = _visible(_as(bob).get("/rollouts/new/").content.decode())
    for shown in ("Nodes restarting at once (nodes)", "Canary bake (s)", "Bake per batch (s)",
                  "Time allowed to apply (s)", "Ledger measuring window (s)", "TTFT p95 (s)",
                  "Error rate at most (0 to 1)"):  # fmt: skip
        assert shown in text
    assert RAW_NAMES.findall(text) == []


def test_the_strategy_is_chosen_among_the_assessments_recommendations(bob: User) -> None:
    f = fleet(1)
    assessment = _recommending(f)
    html = _as(bob).get(f"/rollouts/new/?assessment={assessment.id}&strategy=batching").content
    select = html.decode().split('<select name="strategy_name"')[1].split("</select>")[0]
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select)
    assert options == [
        ("plan", "", "the plan (every strategy it uses)"),
        ("batching", " selected", "continuous batching"),
        ("quantization", "", "quantization"),
        ("autoscaling", "", "elastic scaling"),
        ("speculative", "", "speculative decoding"),
    ]  # the registry's order; no sharing: the assessment has no sharing result
    assert b'<input name="strategy_name"' not in html  # no longer free text


def test_a_bad_strategy_field_is_named_by_its_label(bob: User) -> None:
    nodes = fleet(1).nodes
    response = _as(bob).post("/rollouts/new/", {
        "source": "manual", "title": "x", "engine_args": '{"max_num_seqs": 8}',
        "nodes": [str(nodes[0].id)], "canary_bake_s": "-5",
    })  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 400
    assert '<li class="error">Canary bake (s): must be between 0 and 604800, got -5</li>' in html
    assert re.search(r'<input name="canary_bake_s" value="-5"[^>]*aria-invalid="true"', html)
    assert not Rollout.objects.exists()


def test_approve_shows_only_where_a_second_approver_is_required(
    alice: User, bob: User, settings: Any
) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    settings.ROLLOUT_SECOND_APPROVER = False
    html = _as(alice).get(f"/rollouts/{rollout.id}/").content.decode()
    assert 'value="approve"' not in html
    assert 'data-testid="start"' in html
    note = html.split('data-testid="approval-note">')[1].split("</p>")[0]
    assert note.startswith("No second approval is required here")

    settings.ROLLOUT_SECOND_APPROVER = True
    html = _as(alice).get(f"/rollouts/{rollout.id}/").content.decode()
    assert '<button name="action" value="approve" data-testid="approve">Approve</button>' in html
    assert "Four-eyes approval is on" in html


def test_the_rollout_page_says_its_gates_and_strategy_in_words(bob: User, carol: User) -> None:
    nodes = fleet(1).nodes
    rollout = rollout_propose(user=bob, nodes=[nodes[0].id], change=CHANGE)
    assert rollout.gates["defaults"] == ["ttft_p95_s", "tpot_p95_s", "max_error_rate",
                                         "min_requests"]  # fmt: skip
    text = _visible(_as(carol).get(f"/rollouts/{rollout.id}/").content.decode())
    assert (
        "(defaults: TTFT p95, TPOT p95, error rate at most, requests needed to judge a bake)"
        in text
    )
    assert "then batches of 1 node at a time" in text
    assert RAW_NAMES.findall(text) == []
