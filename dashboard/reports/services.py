"""Writes of the report archive: create, build (render + store), send, schedule.

`report_create` stores a queued report and queues its build on commit; `report_build` claims
it (queued -> running, so two workers never render one report), renders it and stores the
PDF and the headline numbers, or the error. Schedules are django-celery-beat PeriodicTasks,
one per cluster (weekly, Monday 07:00 in TIME_ZONE, by default), editable in the admin.
"""

from __future__ import annotations

import json
from datetime import timedelta
from email.mime.image import MIMEImage
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from advisor.services.beat import beat_task_save
from dashboard.models import Report, ReportSchedule, ReportStatus
from dashboard.reports.content import report_content
from dashboard.reports.images import ReportImageError
from dashboard.reports.render import RenderedReport, report_render
from dashboard.windows import Window
from probes.models import Cluster

DEFAULT_CRONTAB = {"minute": "0", "hour": "7", "day_of_week": "1"}  # Mondays 07:00
SCHEDULED_TASK = "dashboard.tasks.report_scheduled"


class ReportInputError(ValueError):
    """Bad schedule or recipients; the message names the field."""


def report_create(
    *, cluster: Cluster | None, days: int, user: Any = None, schedule: ReportSchedule | None = None
) -> Report:
    """A queued report of the `days` ending now; its build is queued when the caller commits."""
    if not 1 <= days <= 90:
        raise ReportInputError(f"days: must be 1..90, got {days}")
    end = timezone.now().replace(second=0, microsecond=0)
    report = Report.objects.create(
        cluster=cluster,
        schedule=schedule,
        window_start=end - timedelta(days=days),
        window_end=end,
        created_by=user if getattr(user, "pk", None) else None,
    )
    transaction.on_commit(lambda: _queue_build(report.pk))
    return report


def _queue_build(report_id: int) -> None:
    from dashboard.tasks import report_build as task

    task.delay(report_id)


def report_build(*, report_id: int) -> Report | None:
    """Render a queued report and store it; None when another worker already claimed it."""
    claimed = Report.objects.filter(id=report_id, status=ReportStatus.QUEUED).update(
        status=ReportStatus.RUNNING
    )
    if claimed != 1:
        return None
    report = Report.objects.select_related("cluster").get(id=report_id)
    window = Window("custom", report.window_start, report.window_end, end_given=True)
    try:
        content = report_content(cluster=report.cluster, window=window)
        rendered = report_render(content)
    except ReportImageError as exc:
        report.status = ReportStatus.FAILED
        report.error = str(exc)
        report.save(update_fields=["status", "error"])
        return report
    report.pdf.save(report.file_name, ContentFile(rendered.pdf), save=False)
    report.summary = json.loads(json.dumps(content.summary, default=float))
    report.status = ReportStatus.READY
    report.rendered_at = timezone.now()
    report.save(update_fields=["pdf", "summary", "status", "rendered_at"])
    report._rendered = rendered  # type: ignore[attr-defined]  # for report_send right after
    return report


def report_send(*, report: Report, recipients: list[str], rendered: RenderedReport) -> int:
    """Mail the report: HTML with the charts as inline images, plain text, the PDF attached."""
    if not recipients:
        return 0
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text_email,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(rendered.html_email, "text/html")
    # multipart/mixed: the text/HTML alternatives, the charts (inline, referenced by cid:)
    # and the PDF; mail clients resolve cid: references across the mixed parts.
    for name, png in rendered.images.items():
        image = MIMEImage(png, "png")
        image.add_header("Content-ID", f"<{name}>")
        image.add_header("Content-Disposition", "inline", filename=f"{name}.png")
        message.attach(image)
    message.attach(report.file_name, rendered.pdf, "application/pdf")
    sent = message.send()
    Report.objects.filter(pk=report.pk).update(
        sent_to=", ".join(recipients), sent_at=timezone.now()
    )
    return sent


def recipients_parse(raw: str) -> list[str]:
    """Comma/newline-separated addresses; a bad one is named."""
    found = [r.strip() for r in raw.replace("\n", ",").split(",") if r.strip()]
    for address in found:
        try:
            validate_email(address)
        except Exception as exc:
            raise ReportInputError(f"recipients: {address!r} is not an e-mail address") from exc
    return found


def schedule_save(
    *,
    cluster: Cluster,
    recipients: str = "",
    enabled: bool = True,
    days: int = 7,
    crontab: dict[str, str] | None = None,
) -> ReportSchedule:
    """Create or update a cluster's schedule and its beat task (all or nothing)."""
    addresses = recipients_parse(recipients)
    if not 1 <= days <= 90:
        raise ReportInputError(f"window_days: must be 1..90, got {days}")
    with transaction.atomic():
        schedule, _ = ReportSchedule.objects.get_or_create(cluster=cluster)
        schedule.recipients = ", ".join(addresses)
        schedule.window_days = days
        beat_task_save(
            schedule=schedule,
            name=f"report: {cluster.name}",
            task=SCHEDULED_TASK,
            crontab=crontab or DEFAULT_CRONTAB,
            enabled=enabled,
        )
    return schedule


def schedules_ensure() -> int:
    """Give every cluster without a schedule the default weekly one; returns how many."""
    created = 0
    for cluster in Cluster.objects.filter(report_schedule__isnull=True):
        schedule_save(cluster=cluster)
        created += 1
    return created


def report_scheduled_run(*, schedule_id: int) -> Report | None:
    """What the beat task runs: build this week's report now and mail it."""
    schedule = ReportSchedule.objects.select_related("cluster").filter(pk=schedule_id).first()
    if schedule is None:
        return None
    report = Report.objects.create(
        cluster=schedule.cluster,
        schedule=schedule,
        window_start=timezone.now().replace(second=0, microsecond=0)
        - timedelta(days=schedule.window_days),
        window_end=timezone.now().replace(second=0, microsecond=0),
    )
    built = report_build(report_id=report.pk)
    rendered = getattr(built, "_rendered", None)
    if built is not None and rendered is not None:
        report_send(report=built, recipients=schedule.recipient_list, rendered=rendered)
    return built
