"""The what-if playground: the form, a run stored and simulated on the `sim` queue, its page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from advisor.models import Assessment
from config.celery import app
from dashboard.models import WhatIf, WhatIfStatus
from dashboard.tasks import whatif_run
from tests.dashboard.assessed import assessment_completed, assessment_with_big
from tests.dashboard.conftest import END, SmallFleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def assessment(small_fleet: SmallFleet) -> Assessment:
    return assessment_completed(cluster=small_fleet.cluster, end=END)


def _form(assessment: Assessment, **changes: str) -> dict[str, str]:
    """The playground's form as the page fills it (the assessment's own values), plus changes."""
    data = {
        "d0-hardware": "H100-SXM", "d0-tensor_parallel": "1", "d0-replicas": "3",
        "d0-ttft_p95_s": "2.0", "d0-tpot_p95_s": "0.1", "d0-max_quality_loss_points": "1.0",
        "d0-routing": "round_robin", "d0-kv_offload_gib": "0.0",
        "d1-hardware": "H100-SXM", "d1-tensor_parallel": "1", "d1-replicas": "2",
        "d1-ttft_p95_s": "2.0", "d1-tpot_p95_s": "0.1", "d1-max_quality_loss_points": "1.0",
        "d1-routing": "round_robin", "d1-kv_offload_gib": "0.0",
        "price-H100-SXM": "4.0", "price-A100-80GB": "2.74",
        **{f"s-{name}": "on" for name in ("batching", "quantization", "autoscaling",
                                          "speculative", "sharing")},
    }  # fmt: skip
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_form_shows_the_assessments_own_values_to_operators_only(
    client: Client, bob, carol, assessment: Assessment
) -> None:
    client.force_login(bob)
    html = client.get(f"/assessments/{assessment.pk}/whatif/").content.decode()
    assert 'data-testid="whatif-form"' in html
    assert 'name="d0-replicas" value="3"' in html
    assert 'name="price-H100-SXM" value="4.0"' in html
    assert '<input type="checkbox" name="s-sharing" checked' in html

    client.force_login(carol)
    html = client.get(f"/assessments/{assessment.pk}/whatif/").content.decode()
    assert 'data-testid="whatif-form"' not in html
    assert (
        client.post(f"/assessments/{assessment.pk}/whatif/", _form(assessment)).status_code == 403
    )
    assert not WhatIf.objects.exists()


def test_an_operator_runs_a_what_if_and_sees_it_beside_the_assessment(
    client: Client, bob, assessment: Assessment, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/assessments/{assessment.pk}/whatif/", _form(assessment, **{"price-H100-SXM": "2"})
        )
    whatif = WhatIf.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/whatifs/{whatif.pk}/"
    assert whatif.status == WhatIfStatus.COMPLETED, whatif.error
    assert whatif.described == ["price of H100-SXM $4 -> $2 per GPU-hour"]
    assert whatif.changes["prices"]["H100-SXM"] == 2.0
    # one GPU kind: the same plan at half the price
    stored = assessment.plan["fleet_plan"]["usd_per_month"]
    assert whatif.plan["fleet_plan"]["usd_per_month"] == pytest.approx(stored / 2)

    html = client.get(response["Location"]).content.decode()
    kpi = html.split('data-testid="kpi-whatif-plan"')[1].split("</div>")[0]
    assert f"${stored / 2:,.0f}" in kpi
    assert "price of H100-SXM $4 -&gt; $2 per GPU-hour" in html
    assert 'id="fig-compare"' in html
    assert 'id="fig-waterfall"' in html
    assert client.get(f"/whatifs/{whatif.pk}/progress.json").json()["done"] is True
    # the assessment page lists it
    assert (
        f'href="/whatifs/{whatif.pk}/"'
        in client.get(f"/assessments/{assessment.pk}/").content.decode()
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"d0-replicas": "three"},
         "llama: replicas today: expected a number, got &#x27;three&#x27;"),
        ({"d1-tensor_parallel": "1.5"}, "qwen: GPUs per replica: expected a whole number"),
        ({"d0-ttft_p95_s": "-1"}, "llama: TTFT p95 (s): expected a number &gt; 0"),
        ({"d0-hardware": "TPU"}, "llama: GPU: unknown &#x27;TPU&#x27;"),
        ({"price-H100-SXM": "-3"},
         "price of H100-SXM (USD per GPU-hour): expected a number &gt;= 0"),
        ({}, "Change: nothing changed"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_by_its_label_and_stores_nothing(
    client: Client, bob, assessment: Assessment, changes: dict[str, str], error: str
) -> None:
    client.force_login(bob)
    response = client.post(f"/assessments/{assessment.pk}/whatif/", _form(assessment, **changes))
    html = response.content.decode()
    assert response.status_code == 400
    assert error in html
    assert "deployments." not in html  # no internal paths
    assert "prices." not in html
    assert not WhatIf.objects.exists()
    # the form shows what was posted, so the user can fix it, and marks that input
    for name, value in changes.items():
        tag = _tag(html, name)
        assert 'aria-invalid="true"' in tag
        assert f'value="{value}"' in tag or name == "d0-hardware"  # a select keeps no "TPU"


def _tag(html: str, name: str) -> str:
    """The input or select element named `name`."""
    found = re.search(rf'<(?:input|select)[^>]*name="{re.escape(name)}"[^>]*>', html)
    assert found is not None, name
    return found.group(0)


def _errors(html: str) -> list[str]:
    listed = html.split('<ul class="messages">')[1].split("</ul>")[0]
    return [item.split("</li>")[0] for item in listed.split('<li class="error">')[1:]]


def test_every_bad_field_is_named_at_once_and_marked(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    response = client.post(f"/assessments/{assessment.pk}/whatif/", _form(assessment, **{
        "d0-replicas": "three", "d0-ttft_p95_s": "-1", "d1-max_quality_loss_points": "1000",
        "price-H100-SXM": "-3",
    }))  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 400
    assert _errors(html) == [
        "llama: replicas today: expected a number, got &#x27;three&#x27;",
        "llama: TTFT p95 (s): expected a number &gt; 0 and &lt;= 3600 s, got -1.0",
        "qwen: quality loss at most (points): expected a number &gt;= 0 and &lt;= 100 points, "
        "got 1000.0",
        "price of H100-SXM (USD per GPU-hour): expected a number &gt;= 0 and &lt;= 1000 USD "
        "per GPU-hour, got -3.0",
    ]
    assert html.count('aria-invalid="true"') == 4
    assert 'value="1000" aria-invalid="true"' in _tag(html, "d1-max_quality_loss_points")
    assert html.count('class="field-error"') == 4
    assert not WhatIf.objects.exists()


def test_a_quality_loss_over_100_points_is_refused_by_its_bound(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    form = _form(assessment, **{"d0-max_quality_loss_points": "1000"})
    response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    assert response.status_code == 400
    assert _errors(response.content.decode()) == [
        "llama: quality loss at most (points): expected a number &gt;= 0 and &lt;= 100 points, "
        "got 1000.0"
    ]
    assert not WhatIf.objects.exists()
    # the bound's edge is a what-if
    form = _form(assessment, **{"d0-max_quality_loss_points": "100"})
    assert client.post(f"/assessments/{assessment.pk}/whatif/", form).status_code == 302
    assert WhatIf.objects.get().changes["deployments"]["llama"]["slo"] == {
        "ttft_p95_s": 2.0, "tpot_p95_s": 0.1, "max_quality_loss_points": 100.0,
    }  # fmt: skip


def test_a_failed_simulation_is_stored_not_left_running(
    assessment: Assessment, monkeypatch: pytest.MonkeyPatch
) -> None:
    whatif = WhatIf.objects.create(assessment=assessment, changes={"prices": {"H100-SXM": 1}})

    def broken(**_: Any) -> None:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr("dashboard.whatif.whatif_simulate", broken)
    assert whatif_run(whatif.pk) == "failed"
    whatif.refresh_from_db()
    assert whatif.status == WhatIfStatus.FAILED
    assert whatif.error == "RuntimeError: engine exploded"
    assert whatif_run(whatif.pk) == "not queued (already claimed or gone)"


def test_what_ifs_run_on_the_simulation_queue() -> None:
    route = app.amqp.router.route({}, whatif_run.name, (1,), {})
    assert route["queue"].name == "sim"


def test_an_infeasible_what_if_says_so_and_keeps_the_deployment_in_the_totals(
    client: Client, bob, small_fleet: SmallFleet, django_capture_on_commit_callbacks: Any
) -> None:
    # Issue 16, item 4: 70B on one L4 does not fit; the headline showed the other's savings.
    assessment = assessment_with_big(cluster=small_fleet.cluster, end=END)
    client.force_login(bob)
    form = {
        "d0-hardware": "H100-SXM", "d0-tensor_parallel": "1", "d0-replicas": "3",
        "d1-hardware": "L4", "d1-tensor_parallel": "1", "d1-replicas": "1",
        **{f"s-{name}": "on" for name in ("batching", "quantization", "autoscaling",
                                          "speculative", "sharing")},
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    whatif = WhatIf.objects.get()
    assert whatif.status == WhatIfStatus.COMPLETED, whatif.error
    assert whatif.described == ["big: GPU H100-SXM -> L4", "big: GPUs per replica 2 -> 1"]
    today = {d["deployment"]: d["baseline"] for d in assessment.plan["deployments"]}
    llama = next(d for d in whatif.plan["deployments"] if d["deployment"] == "llama")
    base = llama["baseline"]["usd_per_month"] + today["big"]["usd_per_month"]
    saved = llama["baseline"]["usd_per_month"] - llama["plan"]["usd_per_month"]

    html = client.get(response["Location"]).content.decode()
    notice = html.split('data-testid="whatif-infeasible"')[1].split("</p>")[0]
    assert "<strong>This what-if is infeasible</strong> for <strong>big</strong>: " in notice
    assert "the model does not fit" in notice
    savings = html.split('data-testid="kpi-whatif-savings"')[1].split("</div>")[0]
    assert f"${saved:,.0f}" in savings
    assert f"{saved / base * 100:.1f}% vs today under the changes" in savings
    assert "infeasible for big: counted at today" in savings
    today_kpi = html.split('data-testid="kpi-whatif-plan"')[1].split("</div>")[0]
    assert f"today under the changes ${base:,.0f}" in today_kpi
    held_row = html.split('data-testid="whatif-held-row"')[1].split("</tr>")[0]
    assert f"${today['big']['usd_per_month']:,.0f}" in held_row
    assert "infeasible: at today" in held_row
    # the playground's list and the assessment's page say it too
    listed = client.get(f"/assessments/{assessment.pk}/whatif/").content.decode()
    assert "infeasible: big" in listed
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    assert "(infeasible for big: counted at today" in page


def _select(html: str, name: str) -> str:
    """The select element named `name`, options included."""
    found = re.search(rf'<select[^>]*name="{re.escape(name)}".*?</select>', html, re.S)
    assert found is not None, name
    return found.group(0)


def _selected(select: str) -> list[str]:
    return re.findall(r'<option value="([^"]+)" selected>', select)


def test_the_form_offers_prefix_caching_gpu_kinds_and_the_hardware_lever(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    html = client.get(f"/assessments/{assessment.pk}/whatif/").content.decode()
    assert _selected(_select(html, "d0-enable_prefix_caching")) == ["on"]
    assert _selected(_select(html, "d0-pin")) == []
    assert _selected(_select(html, "d1-exclude")) == []
    assert 'value="L40S"' in _select(html, "d1-pin")
    assert '<input type="hidden" name="d0-kinds" value="1">' in html
    assert _selected(_select(html, "hardware_moves")) == ["on"]


def test_an_operator_pins_excludes_and_switches_caching_and_the_lever(
    client: Client, bob, assessment: Assessment, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(bob)
    form: dict[str, Any] = _form(assessment, **{
        "d0-enable_prefix_caching": "off", "d0-kinds": "1", "d1-kinds": "1",
        "hardware_moves": "off",
    })  # fmt: skip
    form["d0-pin"] = ["L40S", "L4"]
    form["d1-exclude"] = ["H100-SXM"]
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    assert response.status_code == 302
    whatif = WhatIf.objects.get()
    assert whatif.described == [
        "llama: prefix caching on -> off",
        "llama: GPU kinds pinned to L40S, L4",
        "qwen: GPU kinds excluded H100-SXM",
        "moves to other GPU kinds off",
    ]
    assert whatif.changes["deployments"]["llama"]["gpu_kinds"] == {
        "pin": ["L40S", "L4"], "exclude": [],
    }  # fmt: skip
    assert whatif.changes["deployments"]["llama"]["enable_prefix_caching"] is False
    assert whatif.changes["hardware_moves"] is False


def test_a_kind_both_pinned_and_excluded_is_named_and_marked(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    form: dict[str, Any] = _form(
        assessment, **{"d0-kinds": "1", "d1-enable_prefix_caching": "maybe"}
    )
    form["d0-pin"] = ["L4"]
    form["d0-exclude"] = ["L4"]
    response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    html = response.content.decode()
    assert response.status_code == 400
    assert _errors(html) == [
        "llama: never move to: &#x27;L4&#x27; is also pinned: pin or exclude it, not both",
        "qwen: prefix caching: expected on or off, got &#x27;maybe&#x27;",
    ]
    exclude = _select(html, "d0-exclude")
    assert 'aria-invalid="true"' in exclude
    assert _selected(exclude) == ["L4"]  # what was posted, to fix
    assert _selected(_select(html, "d0-pin")) == ["L4"]
    assert not WhatIf.objects.exists()


def test_the_form_offers_routing_and_kv_offload_with_the_stored_values(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    html = client.get(f"/assessments/{assessment.pk}/whatif/").content.decode()
    routing = _select(html, "d0-routing")
    assert re.findall(r'<option value="([^"]+)"', routing) == ["round_robin", "prefix_aware"]
    assert _selected(routing) == ["round_robin"]
    assert ">prefix aware</option>" in routing
    assert 'name="d1-kv_offload_gib" value="0.0"' in _tag(html, "d1-kv_offload_gib")


def test_an_operator_changes_routing_and_kv_offload(
    client: Client, bob, assessment: Assessment, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(bob)
    # qwen's routing and offload are posted as stored: no change for it.
    form = _form(assessment, **{"d0-routing": "prefix_aware", "d0-kv_offload_gib": "64"})
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    assert response.status_code == 302
    whatif = WhatIf.objects.get()
    assert whatif.described == [
        "llama: routing round_robin -> prefix_aware",
        "llama: KV offload to host memory 0 -> 64 GiB",
    ]
    llama = whatif.changes["deployments"]["llama"]
    assert (llama["routing"], llama["kv_offload_gib"]) == ("prefix_aware", 64.0)
    assert whatif.changes["deployments"]["qwen"]["routing"] == "round_robin"


def test_the_stored_routing_and_offload_are_no_change(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    form = _form(assessment, **{"d1-routing": "round_robin", "d1-kv_offload_gib": "0"})
    response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    assert response.status_code == 400
    assert _errors(response.content.decode()) == [
        "Change: nothing changed: every value is the assessment&#x27;s own"
    ]
    assert not WhatIf.objects.exists()


def test_a_bad_routing_and_kv_offload_are_named_and_marked(
    client: Client, bob, assessment: Assessment
) -> None:
    client.force_login(bob)
    form = _form(assessment, **{"d0-routing": "random", "d1-kv_offload_gib": "-8"})
    response = client.post(f"/assessments/{assessment.pk}/whatif/", form)
    html = response.content.decode()
    assert response.status_code == 400
    assert _errors(html) == [
        "llama: routing: expected one of [&#x27;round_robin&#x27;, &#x27;prefix_aware&#x27;], "
        "got &#x27;random&#x27;",
        "qwen: KV offload to host memory (GiB): expected a number &gt;= 0 and &lt;= 16384 GiB, "
        "got -8.0",
    ]
    routing = _select(html, "d0-routing")
    assert 'aria-invalid="true"' in routing
    assert _selected(routing) == []  # the select keeps no "random"
    offload = _tag(html, "d1-kv_offload_gib")
    assert 'value="-8"' in offload
    assert 'aria-invalid="true"' in offload
    assert html.count('class="field-error"') == 2
    assert not WhatIf.objects.exists()
