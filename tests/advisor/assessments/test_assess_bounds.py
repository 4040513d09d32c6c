"""A stored value out of its bound (a row written before the checks existed) is named by the
assessment and skipped; the rest of the fleet is still assessed."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.models import AssessmentStatus, DeploymentSlo
from advisor.selectors.assessment_fleet import fleet_of
from advisor.services import assessments
from advisor.services.assessment_engine import EngineOutcome
from probes.models import EngineRollup, PriceSheet, TraceFormat
from probes.services import import_trace
from tests.advisor.assessments.fleet import AZURE_CONV, TRACE_END, LabFleet, fleet_build
from tests.support.bounds import store_out_of_bounds

CATALOG_H100_USD = DEFAULT_CATALOG.gpu("H100-SXM").price_usd_per_hour


@pytest.fixture
def lab(db: Any, monkeypatch: pytest.MonkeyPatch) -> LabFleet:
    """The lab fleet with both deployments assessable (the trace imported for each; for
    llama-8b, whose GPU reported for 2 h only, vLLM request counters over the window, so its
    measured minutes are above the data floor)."""

    def fake_run(scenario: Any, *, progress: Any) -> EngineOutcome:
        return EngineOutcome("test", {"deployments": {}}, {}, {"fleet_plan": {}})

    monkeypatch.setattr(assessments, "scenario_run", fake_run)
    fleet = fleet_build(days=2, interval_s=300)
    import_trace(deployment=fleet.sparse, file=AZURE_CONV, format=TraceFormat.AZURE)
    EngineRollup.objects.bulk_create(
        EngineRollup(
            deployment=fleet.sparse,
            resolution="1h",
            bucket_start=TRACE_END - timedelta(hours=h),
            sample_count=360,
            running_mean=1,
            running_max=2,
            waiting_mean=0,
            waiting_max=0,
            requests=3600.0,
        )
        for h in range(1, 49)
    )
    return fleet


def _assess(capture: Any) -> Any:
    with capture(execute=True):
        assessment = assessments.assessment_create(cluster="lab", window="2d", end=TRACE_END)
    assessment.refresh_from_db()
    return assessment


def test_it_names_a_bad_price_and_slo_row_and_assesses_the_rest(
    lab: LabFleet, django_capture_on_commit_callbacks: Any, client: Client, carol: Any
) -> None:
    price = PriceSheet.objects.get(gpu_kind="H100-SXM")
    store_out_of_bounds(price, usd_per_gpu_hour=Decimal("-2"))
    slo = DeploymentSlo.objects.create(deployment=lab.chat, tpot_p95_s=0.05)
    store_out_of_bounds(slo, ttft_p95_s=1e308)

    assessment = _assess(django_capture_on_commit_callbacks)

    assert assessment.status == AssessmentStatus.COMPLETED, assessment.error
    assert assessment.inputs["refused_rows"] == [
        {"model": "probes.PriceSheet", "id": price.pk, "field": "usd_per_gpu_hour",
         "value": "-2.0000",
         "message": "must be >= 0 and <= 1000 USD per GPU-hour, got -2.0000; row skipped, "
                    "as if the kind had no price",
         "text": f"probes.PriceSheet #{price.pk} usd_per_gpu_hour=-2.0000: must be >= 0 and "
                 "<= 1000 USD per GPU-hour, got -2.0000; row skipped, as if the kind had no "
                 "price"},
        {"model": "advisor.DeploymentSlo", "id": slo.pk, "field": "ttft_p95_s",
         "value": "1e+308",
         "message": "must be > 0 and <= 3600 s, got 1e+308; deployment not assessed (fix its "
                    "SLO in the admin)",
         "text": f"advisor.DeploymentSlo #{slo.pk} ttft_p95_s=1e+308: must be > 0 and <= 3600 "
                 "s, got 1e+308; deployment not assessed (fix its SLO in the admin)"},
    ]  # fmt: skip
    # the deployment with the bad SLO is a data gap naming the row...
    [gap] = assessment.data_gaps
    assert gap["deployment"] == "chat"
    assert gap["message"] == (
        f"deployment chat: stored value out of bounds: advisor.DeploymentSlo #{slo.pk} "
        "ttft_p95_s=1e+308: must be > 0 and <= 3600 s, got 1e+308; deployment not assessed "
        "(fix its SLO in the admin)"
    )
    # ...and the other one is assessed, priced at the catalog's list price (said so)
    scenario = json.loads(assessment.scenario)
    assert [d["name"] for d in scenario["deployments"]] == ["llama-8b"]
    h100 = scenario["prices"]["H100-SXM"]
    assert (h100["usd_per_gpu_hour"], h100["defaulted"]) == (CATALOG_H100_USD, True)
    assert h100["source"].startswith(
        f"catalog list price (price sheet row refused: probes.PriceSheet #{price.pk} "
        "usd_per_gpu_hour=-2.0000: must be >= 0"
    )
    # measured cost uses the same fallback: never a negative dollar figure
    measured = assessment.measured["fleet"]
    assert measured["cost_usd"] == pytest.approx(measured["gpu_hours"] * CATALOG_H100_USD)
    assert (measured["gpu_hours"], measured["unpriced_gpu_hours"]) == (146.0, 0.0)
    # the assessment's page names both rows (assumptions, data gaps)
    client.force_login(carol)
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    assert f"probes.PriceSheet #{price.pk} usd_per_gpu_hour=-2.0000" in page
    assert f"advisor.DeploymentSlo #{slo.pk} ttft_p95_s=1e+308" in page


def test_a_fleet_with_no_bad_row_refuses_nothing(lab: LabFleet) -> None:
    DeploymentSlo.objects.create(deployment=lab.chat, ttft_p95_s=3600.0)
    fleet = fleet_of(cluster=lab.cluster)
    assert fleet.refused == ()
    assert fleet.prices["H100-SXM"].usd_per_gpu_hour == 4.25
    chat = next(d for d in fleet.deployments if d.served_name == "chat")
    assert chat.problems == ()
    assert chat.slo["ttft_p95_s"].value == 3600.0


def test_a_replica_count_out_of_bounds_leaves_its_deployment_out_by_name(lab: LabFleet) -> None:
    store_out_of_bounds(lab.chat, replicas=100_000)
    fleet = fleet_of(cluster=lab.cluster)
    [refused] = fleet.refused
    assert refused.text == (
        f"probes.ModelDeployment #{lab.chat.pk} replicas=100000: must be a whole number >= 0 "
        "and <= 512, got 100000; deployment not assessed (fix its replicas in the admin)"
    )
    problems = {d.served_name: d.problems for d in fleet.deployments}
    assert problems == {"chat": (f"stored value out of bounds: {refused.text}",), "llama-8b": ()}
