"""Reports the dashboard generated (the archive) and each cluster's report schedule."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_celery_beat.models import PeriodicTask

from probes.models import Cluster


class ReportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Rendering"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ReportSchedule(models.Model):
    """A cluster's scheduled report: when (its beat PeriodicTask) and to whom."""

    cluster = models.OneToOneField(
        Cluster, on_delete=models.CASCADE, related_name="report_schedule"
    )
    # Comma- or newline-separated addresses; empty: archived only, not mailed.
    recipients = models.TextField(blank=True)
    window_days = models.PositiveSmallIntegerField(default=7)
    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster__name"]

    def __str__(self) -> str:
        return f"reports for {self.cluster.name}"

    @property
    def recipient_list(self) -> list[str]:
        return [r.strip() for r in self.recipients.replace("\n", ",").split(",") if r.strip()]


class Report(models.Model):
    """One rendered report: the PDF in the archive, the headline numbers, whom it was sent."""

    cluster = models.ForeignKey(
        Cluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    schedule = models.ForeignKey(
        ReportSchedule, on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(
        max_length=8, choices=ReportStatus.choices, default=ReportStatus.QUEUED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    rendered_at = models.DateTimeField(null=True, blank=True)
    pdf = models.FileField(upload_to="reports/%Y/%m/", blank=True)
    # The headline numbers (JSON-safe), so the archive lists them without opening PDFs.
    summary = models.JSONField(default=dict, blank=True)
    sent_to = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["cluster", "-created_at"], name="report_cluster_created")]

    def __str__(self) -> str:
        where = self.cluster.name if self.cluster else "all clusters"
        return f"{where} {self.window_start:%Y-%m-%d}..{self.window_end:%Y-%m-%d} ({self.status})"

    @property
    def file_name(self) -> str:
        where = self.cluster.name if self.cluster else "fleet"
        return f"gpu-cost-report-{where}-{self.window_end:%Y-%m-%d}.pdf"


class WhatIfStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Simulating"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class WhatIf(models.Model):
    """A what-if run from the playground: a stored assessment's scenario with `changes`.

    `changes` is the input of `advisor.services.whatif.whatif_scenario` (re-applying it to the
    assessment's snapshot gives the same scenario: `scenario_digest`); `described` the changes
    in words; `baseline`, `strategies` and `plan` the engine's answer, shaped like the
    assessment's fields of the same names so pages show both the same way.
    """

    assessment = models.ForeignKey(
        "advisor.Assessment", on_delete=models.CASCADE, related_name="whatifs"
    )
    changes = models.JSONField(default=dict, blank=True)
    described = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=10, choices=WhatIfStatus.choices, default=WhatIfStatus.QUEUED
    )
    progress = models.FloatField(default=0.0, help_text="0..1")
    progress_message = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    scenario_digest = models.CharField(max_length=64, blank=True, help_text="SHA-256")
    engine_version = models.CharField(max_length=64, blank=True)
    baseline = models.JSONField(default=dict, blank=True)
    strategies = models.JSONField(default=dict, blank=True)
    plan = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "what-if run"

    def __str__(self) -> str:
        return f"what-if #{self.pk} on assessment #{self.assessment_id} ({self.status})"
