"""`manage.py demo`: a fleet sized by the engine for the Azure traces it serves, telemetry
derived from them, and a finished assessment whose numbers are the engine's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

from advisor.models import Assessment, AssessmentSchedule, AssessmentStatus, DeploymentSlo
from advisor.selectors.assessment_measured import gpu_telemetry_in_window
from advisor.services.assessments import assessment_rerun
from dashboard.demo_fleet import demo_fleet_ensure
from dashboard.demo_notice import NOTICE
from dashboard.demo_telemetry import SAMPLES_PER_MINUTE, gpu_minutes
from dashboard.models import ReportSchedule
from probes.bounds import bad_rows_refuse
from probes.models import (
    Cluster,
    EngineRollup,
    Gpu,
    ModelDeployment,
    PriceSheet,
    RequestRecord,
    TraceImport,
)
from tests.support.bounds import bound_checks, run_python_step

pytestmark = pytest.mark.django_db


def test_the_demo_lands_on_a_coherent_fleet_and_an_engine_assessment(
    client: Client, settings, tmp_path, alice
) -> None:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo", stdout=out)
    text = out.getvalue()
    # the weekly assessment and report schedules exist before beat's hourly pass (item 9)
    demo = Cluster.objects.get(name="demo")
    assert AssessmentSchedule.objects.filter(cluster=demo).count() == 1
    assert ReportSchedule.objects.filter(cluster=demo).count() == 1

    # the traces, every row, through the import service
    assert RequestRecord.objects.count() == 8819 + 19366
    assert TraceImport.objects.count() == 2
    price = PriceSheet.objects.get(gpu_kind="H100-SXM")
    assert price.source.startswith("catalog default: AWS EC2 Capacity Blocks")
    # every stored value the admin bounds is in bounds: the value-bounds migration's check of
    # existing rows passes on a demo database, and the admin would save each row as it is
    for model in (PriceSheet, ModelDeployment, DeploymentSlo, AssessmentSchedule):
        checks = bound_checks(model)
        run_python_step(bad_rows_refuse(model._meta.app_label, model.__name__, checks))
        for row in model.objects.all():
            row.full_clean()
    assert ModelDeployment.objects.count() == 3
    # deployments use catalog models and run the engine's count plus one spare replica
    sized = dict(re.findall(r"  (\S+): .* needs (\d+) replica", text))
    chat = ModelDeployment.objects.get(served_name="llama-3-70b-chat")
    code = ModelDeployment.objects.get(served_name="qwen-2.5-7b-code")
    assert (chat.replicas, code.replicas) == (int(sized[chat.served_name]) + 1,
                                              int(sized[code.served_name]) + 1)  # fmt: skip
    assert chat.gpus.count() == 4 * chat.replicas
    assert code.gpus.count() == code.replicas
    # vLLM's counters per minute are the trace's: the trace hour holds every record
    counted = EngineRollup.objects.filter(deployment=chat, resolution="1m").values_list(
        "requests", flat=True
    )
    assert sum(counted) > 19366 * 7 * 24  # the trace's hour, repeated over the week

    assessment = Assessment.objects.get(cluster__name="demo")
    assert assessment.status == AssessmentStatus.COMPLETED, assessment.error
    plan = assessment.plan
    statuses = {d["deployment"]: d for d in plan["deployments"]}
    assert set(statuses) == {"llama-3-70b-chat", "qwen-2.5-7b-code"}
    for name, item in statuses.items():
        assert item["status"] == "ok", item["message"]
        # today's configuration carries the trace within the default SLOs
        assert item["baseline"]["meets_slo"], name
        assert item["baseline"]["ttft_p95_s"] <= 2.0
        assert item["baseline"]["tpot_p95_s"] <= 0.1
        # the telemetry follows the engine's busy fraction: measured and simulated agree
        gap = assessment.gap["deployments"][name]
        assert abs(gap["util_gap_pct_points"]) < 5.0, (name, gap)
        assert gap["usd_per_month_gap"] == pytest.approx(0.0, abs=1.0)
    # the plan costs less than today, and right-sizing is worth exactly the spare replicas
    assert 0 < plan["fleet_plan"]["usd_per_month"] < plan["fleet_baseline"]["usd_per_month"]
    rows = {frozenset(r["strategies"]): r for r in plan["combinations"]}
    h100_month = float(price.usd_per_gpu_hour) * 730.0
    assert plan["fleet_baseline"]["usd_per_month"] - rows[frozenset()]["usd_per_month"] == (
        pytest.approx(h100_month * (4 + 1))  # one TP4 replica + one TP1 replica
    )
    # not enough data is an answer
    [gap] = assessment.data_gaps
    assert gap["deployment"] == "llama-3-8b-batch"
    assert "has 2 h of telemetry and no request records" in gap["message"]
    # the numbers are the engine's: re-running the stored scenario gives the same
    _outcome, differ = assessment_rerun(assessment=assessment)
    assert differ == []
    # and the command says them
    assert f"plan: ${plan['fleet_plan']['usd_per_month']:,.0f}/month" in text

    call_command("demo", stdout=StringIO())  # again: nothing duplicated
    assert Cluster.objects.filter(name="demo").count() == 1
    assert RequestRecord.objects.count() == 28185
    assert Assessment.objects.count() == 1

    client.force_login(alice)
    page = client.get("/").content.decode()
    gpus = Gpu.objects.count()
    assert f">{gpus}<" in page.split('data-testid="kpi-gpus"')[1].split("</div>")[0]
    assert "No price for" in page  # the L4 node, on purpose
    assert NOTICE[:60] in page
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    assert NOTICE[:60] in page
    assert f"${plan['fleet_plan']['usd_per_month']:,.0f}" in page


def test_the_noise_model_is_the_documented_one() -> None:
    rng = np.random.default_rng(1)
    busy = np.array([0.0, 0.5, 1.0] * 2000)
    data = gpu_minutes(busy=busy, memory_bytes=80 * 2**30, hardware="H100-SXM", rng=rng)
    assert data.util_samples.shape == (busy.size, SAMPLES_PER_MINUTE)
    assert (data.util_samples[busy == 0.0] == 0).all()  # idle boards report 0
    half = data.util_samples[busy == 0.5]
    assert half.mean() == pytest.approx(50.0, abs=0.1)
    assert half.std() == pytest.approx(3.0, abs=0.1)  # N(0, 3 points), whole percent
    assert data.util_samples.max() == 100.0  # clipped
    assert data.memory_bytes.mean() == pytest.approx(0.9 * 80 * 2**30, rel=0.001)
    assert data.power_w[busy == 0.0].mean() == pytest.approx(70.0, rel=0.01)  # H100 idle


def test_a_demo_stored_by_an_earlier_version_is_rebuilt_and_nothing_else_is_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dashboard import demo_fleet

    old = Cluster.objects.create(name="demo")
    ModelDeployment.objects.create(cluster=old, served_name="codellama-34b", model_id="x")
    other = Cluster.objects.create(name="prod")
    monkeypatch.setattr(demo_fleet, "_build", lambda now: "built")

    said = demo_fleet.demo_fleet_ensure()
    assert said == "demo fleet: the stored 'demo' cluster predates this demo: rebuilt\nbuilt"
    assert not Cluster.objects.filter(pk=old.pk).exists()
    assert Cluster.objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize("minute", [0, 31, 59])
def test_the_new_l4_node_has_two_hours_in_the_assessment_window_at_any_minute(
    minute: int,
) -> None:
    now = datetime(2026, 11, 28, 13, minute, 30, tzinfo=UTC)
    demo_fleet_ensure(now=now)
    end = now.replace(minute=0, second=0, microsecond=0)  # where the demo's assessment ends
    l4s = list(Gpu.objects.filter(model_name__contains="L4").values_list("id", flat=True))

    seen = gpu_telemetry_in_window(gpu_ids=l4s, start=end - timedelta(days=7), end=end)

    assert len(l4s) > 0
    assert {gpu.hours_observed for gpu in seen.values()} == {2}
