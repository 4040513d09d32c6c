"""Reports: Plotly charts rendered offline by kaleido + Chromium, the PDF, the e-mail, schedules."""

from __future__ import annotations

import io
import shutil
from datetime import timedelta
from email.mime.base import MIMEBase
from typing import Any

import plotly.graph_objects as go
import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.test import Client
from django.utils.html import escape
from django_celery_beat.models import PeriodicTask
from PIL import Image
from pypdf import PdfReader

from dashboard.formatting import usd
from dashboard.models import Report, ReportSchedule, ReportStatus
from dashboard.reports import services
from dashboard.reports.content import report_content
from dashboard.reports.images import figures_to_png
from dashboard.reports.render import report_render
from dashboard.windows import Window
from tests.dashboard.assessed import assessment_completed, assessment_with_weak_evidence
from tests.dashboard.conftest import END, SmallFleet
from tests.support.components import missing

pytestmark = pytest.mark.django_db


def need_chromium() -> None:
    if not shutil.which("chromium"):
        missing("Chromium", "the `chromium` package renders report charts (kaleido)")


@pytest.mark.integration
def test_kaleido_renders_a_plotly_figure_with_the_local_chromium() -> None:
    need_chromium()
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 3], marker_color="#2563eb"))
    fig.update_layout(height=300, plot_bgcolor="white", paper_bgcolor="white")
    png = figures_to_png({"bars": fig}, width=400, scale=1.0)["bars"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (400, 300)
    # The bars were drawn: the bar colour covers a good part of the plot.
    blue = sum(1 for pixel in image.get_flattened_data() if pixel == (0x25, 0x63, 0xEB))
    assert blue > 2000


def week() -> Window:
    return Window("7d", END - timedelta(days=7), END, end_given=True)


@pytest.mark.integration
def test_the_pdf_and_the_email_carry_the_same_numbers_and_charts(
    small_fleet: SmallFleet,
) -> None:
    need_chromium()
    content = report_content(cluster=small_fleet.cluster, window=week())
    rendered = report_render(content)

    assert set(rendered.images) == {"fleet_heatmap", "fleet_idle", "fleet_util"}
    for png in rendered.images.values():
        assert Image.open(io.BytesIO(png)).size[0] == 1800  # 900 px at scale 2

    reader = PdfReader(io.BytesIO(rendered.pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    # Pages share one resource dictionary: count the distinct images.
    images = {image.name: image for page in reader.pages for image in page.images}
    assert len(images) == 3
    for figure in ("$40.00", "$192", "34.0 h", "L4 (1 GPU, 24.0 h idle)"):
        assert figure in text, figure  # idle cost, spend, idle hours, the unpriced kind
        assert figure in rendered.html_email
    for name in rendered.images:
        assert f'src="cid:{name}"' in rendered.html_email
    assert "$40.00" in rendered.text_email


@pytest.mark.integration
def test_a_scheduled_report_is_archived_and_mailed(small_fleet: SmallFleet, settings: Any) -> None:
    need_chromium()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    schedule = services.schedule_save(
        cluster=small_fleet.cluster, recipients="sre@example.org,\nlead@example.org", days=7
    )
    report = services.report_scheduled_run(schedule_id=schedule.pk)

    assert report is not None
    assert report.status == ReportStatus.READY
    assert report.pdf.read().startswith(b"%PDF")
    assert report.summary["fleet"]["gpus"] == 3
    [message] = mail.outbox
    assert isinstance(message, EmailMultiAlternatives)
    assert message.to == ["sre@example.org", "lead@example.org"]
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    assert 'src="cid:fleet_heatmap"' in str(html)
    content_ids = {
        part.get("Content-ID") for part in message.attachments if isinstance(part, MIMEBase)
    }
    assert {"<fleet_heatmap>", "<fleet_idle>", "<fleet_util>"} <= content_ids
    pdfs = [a for a in message.attachments if isinstance(a, tuple) and a[2] == "application/pdf"]
    assert len(pdfs) == 1
    assert bytes(pdfs[0][1]).startswith(b"%PDF")
    report.refresh_from_db()
    assert report.sent_to == "sre@example.org, lead@example.org"


def test_a_report_without_a_browser_fails_with_the_reason(
    small_fleet: SmallFleet, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_create(cluster=small_fleet.cluster, days=7)
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED
    assert report.error == "BROWSER_PATH: no browser at '/nonexistent/chromium'"
    assert not report.pdf


def test_a_report_is_built_once_even_if_its_task_runs_twice(small_fleet: SmallFleet) -> None:
    report = Report.objects.create(
        cluster=small_fleet.cluster, window_start=END - timedelta(days=7), window_end=END,
        status=ReportStatus.RUNNING,
    )  # fmt: skip
    assert services.report_build(report_id=report.pk) is None  # another worker holds it


def test_every_cluster_gets_a_weekly_schedule(small_fleet: SmallFleet) -> None:
    assert services.schedules_ensure() == 1
    assert services.schedules_ensure() == 0
    schedule = ReportSchedule.objects.get(cluster=small_fleet.cluster)
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.task == "dashboard.tasks.report_scheduled"
    assert task.kwargs == f'{{"schedule_id": {schedule.pk}}}'
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "7", "1")
    assert schedule.recipient_list == []


def test_a_bad_recipient_is_named_and_nothing_saved(small_fleet: SmallFleet) -> None:
    with pytest.raises(services.ReportInputError, match="recipients: 'not-an-address'"):
        services.schedule_save(cluster=small_fleet.cluster, recipients="a@b.org, not-an-address")
    assert not ReportSchedule.objects.exists()
    assert not PeriodicTask.objects.filter(task=services.SCHEDULED_TASK).exists()


def test_operators_generate_and_viewers_only_read(
    client: Client, bob, carol, small_fleet: SmallFleet, django_capture_on_commit_callbacks
) -> None:
    client.force_login(carol)
    page = client.get("/reports/").content.decode()
    assert 'data-testid="generate-report"' not in page
    assert 'data-testid="schedule-form"' not in page
    assert client.post("/reports/generate/", {"days": "7"}).status_code == 403

    client.force_login(bob)
    assert 'data-testid="generate-report"' in client.get("/reports/").content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/reports/generate/", {"days": "7", "cluster": str(small_fleet.cluster.pk)}
        )
    assert response.status_code == 302
    report = Report.objects.get()
    assert (report.cluster, report.status) == (small_fleet.cluster, ReportStatus.QUEUED)
    assert report.window_end - report.window_start == timedelta(days=7)
    response = client.post("/reports/generate/", {"days": "365"}, follow=True)
    assert "days: one of 1, 7, 30" in response.content.decode()
    assert Report.objects.count() == 1


@pytest.mark.integration
def test_the_report_carries_the_assessment_with_the_pages_numbers_and_charts(
    small_fleet: SmallFleet, client: Client, carol
) -> None:
    need_chromium()
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    plan = assessment.plan
    content = report_content(cluster=small_fleet.cluster, window=week())
    rendered = report_render(content)

    assert set(rendered.images) == {
        "fleet_heatmap", "fleet_idle", "fleet_util", "assessment_waterfall_0",
        "assessment_strategies_0",
    }  # fmt: skip
    reader = PdfReader(io.BytesIO(rendered.pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert len({image.name for page in reader.pages for image in page.images}) == 5
    # the same figures as the assessment page
    client.force_login(carol)
    page = client.get(f"/assessments/{assessment.pk}/").content.decode()
    for figure in (
        f"${plan['fleet_plan']['usd_per_month']:,.0f}",
        f"${plan['savings_usd_per_month']:,.0f}",
        f"${plan['fleet_baseline']['usd_per_month']:,.0f}",
        "continuous batching + quantization",
        "deployment llama-batch has 2 h of telemetry",
    ):
        assert figure in text, figure
        assert figure in rendered.html_email, figure
        assert figure in page, figure
    assert 'src="cid:assessment_waterfall_0"' in rendered.html_email
    assert f"/assessments/{assessment.pk}/" in rendered.text_email
    summary = content.summary["assessment"]["prod"]
    assert summary["assessment_id"] == assessment.pk
    assert summary["plan_usd_per_month"] == pytest.approx(plan["fleet_plan"]["usd_per_month"])
    # $ and energy side by side, today vs plan, as the page shows them
    today, after = plan["fleet_baseline"], plan["fleet_plan"]
    kwh = [f"{p['energy_kwh_per_month']:,.0f}" for p in (today, after)]
    joules = [f"{p['energy_j_per_output_token']:,.2f}" for p in (today, after)]
    for figure in (*kwh, *joules):
        assert figure in text, figure
        assert figure in rendered.html_email, figure
        assert figure in page, figure
    assert (
        f"    fleet: {usd(today['usd_per_month'])} -> {usd(after['usd_per_month'])}/month, "
        f"{kwh[0]} -> {kwh[1]} kWh/month, {joules[0]} -> {joules[1]} J/token"
    ) in rendered.text_email
    assert summary["plan_kwh_per_month"] == pytest.approx(after["energy_kwh_per_month"])
    assert summary["baseline_kwh_per_month"] == pytest.approx(today["energy_kwh_per_month"])


def test_a_report_window_takes_the_assessment_that_ended_by_then(small_fleet: SmallFleet) -> None:
    older = assessment_completed(cluster=small_fleet.cluster, end=END - timedelta(days=7))
    assessment_completed(cluster=small_fleet.cluster, end=END + timedelta(days=1))  # later
    earlier_week = Window("7d", END - timedelta(days=14), END - timedelta(days=7), end_given=True)
    content = report_content(cluster=small_fleet.cluster, window=earlier_week)
    assert content.summary["assessment"]["prod"]["assessment_id"] == older.pk
    none_yet = Window("7d", END - timedelta(days=21), END - timedelta(days=14), end_given=True)
    assert "assessment" not in report_content(cluster=small_fleet.cluster, window=none_yet).summary


@pytest.mark.integration
def test_the_report_says_each_deployments_confidence_and_what_is_not_priced(
    small_fleet: SmallFleet,
) -> None:
    # Issue 16, item 3: the report's rows say why, as the page's do.
    need_chromium()
    assessment = assessment_with_weak_evidence(cluster=small_fleet.cluster, end=END)
    rendered = report_render(report_content(cluster=small_fleet.cluster, window=week()))
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(rendered.pdf)).pages)
    assumed = "60% of the window's minutes assumed"
    assert "qwen</strong> · confidence low: 60% of the window&#x27;s minutes assumed" in (
        rendered.html_email
    )
    assert assumed in " ".join(text.split())
    assert f"qwen (confidence low: {assumed} (864 of 1,440" in rendered.text_email
    assert "Not priced: it stays at today's cost): not enough data: not priced, stays at " in (
        rendered.text_email
    )
    assert "today's cost ($5,840/month)" in (rendered.text_email)
    assert "Not enough data, not priced: chat stays at today's cost ($5,840/month)" in (
        rendered.html_email
    )
    held = assessment.plan["fleet_baseline"]["usd_per_month"]
    assert f"${held:,.0f}" in rendered.html_email  # simulated today, chat at today's cost


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_report_rendered_inline_says_rendered_not_queued(
    client: Client, bob, small_fleet: SmallFleet, settings: Any
) -> None:
    # Issue 16 item 9: without a worker the report is built inside the POST; the page said
    # "queued" afterwards.
    need_chromium()
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client.force_login(bob)
    response = client.post(
        "/reports/generate/", {"days": "7", "cluster": str(small_fleet.cluster.pk)}, follow=True
    )
    report = Report.objects.get()
    assert report.status == ReportStatus.READY
    html = response.content.decode()
    assert f"Report #{report.pk} rendered." in html
    assert "queued" not in html.split('class="messages"')[1].split("</ul>")[0]


def test_the_footer_names_the_kinds_an_assessment_priced_at_the_list_price(
    small_fleet: SmallFleet,
) -> None:
    # Issue 16, item 7: the footer said GPUs without a price are "never priced" while the
    # report's assessment priced L4 at the catalog's list price.
    window = Window("7d", END - timedelta(days=7), END, end_given=True)
    fleet_only = report_content(cluster=small_fleet.cluster, window=window)
    assert fleet_only.pricing_note.endswith(
        "do not price them; no assessment here priced a GPU kind from a list price."
    )
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    assessment.inputs["prices"]["L4"] = {
        "kind": "L4", "usd_per_gpu_hour": 0.68, "as_of": None, "from_price_sheet": False,
        "source": "catalog list price (no price sheet row for L4)",
    }  # fmt: skip
    assessment.save(update_fields=["inputs"])
    content = report_content(cluster=small_fleet.cluster, window=window)
    base = {"report": content, "sections": content.sections, "src": {}}

    html = render_to_string("reports/report.html", base)
    text = render_to_string("reports/report.txt", base)

    note = (
        "Every figure is computed from this fleet's telemetry and the price sheet. The fleet "
        "figures list GPUs without a price sheet row apart and do not price them; the "
        "assessments price them at the engine catalog's list price: L4 at $0.68/GPU-hour "
        f"(assessment #{assessment.pk})."
    )
    assert content.pricing_note == note
    assert html.split('data-testid="pricing-note">')[1].split("</p>")[0] == escape(note)
    assert note in text
    assert "never priced" not in html


def test_the_report_lists_the_plans_moves_to_another_gpu_kind(small_fleet: SmallFleet) -> None:
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    plan = assessment.plan
    llama = next(p for p in plan["deployments"] if p["deployment"] == "llama")
    move = "llama: H100-SXM x3 -> L4 x2, -$9,593/month, TTFT p95 80 ms -> 130 ms"
    llama["move"] = move
    assessment.plan = plan
    assessment.save(update_fields=["plan"])
    content = report_content(cluster=small_fleet.cluster, window=week())
    section = next(s for s in content.sections if s.key == "assessment")
    assert section.context["entries"][0]["view"].moves == (move,)
    context = {"section": section, "report": {"site_url": "https://advisor.example"}}
    text = render_to_string("reports/_assessment.txt", context)
    assert f"    move to another GPU kind: {move}\n" in text
    html = render_to_string("reports/_assessment.html", {**context, "src": {}})
    assert f"<li>{escape(move)}</li>" in html
    assert "A node controller does not change GPU kinds" in html
