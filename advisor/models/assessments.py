"""Assessments: a stored, re-runnable answer to "what would each strategy save on this fleet".

An `Assessment` of a cluster over a window keeps everything needed to explain and repeat it:
the engine's input snapshot (`Scenario.to_json()`, re-running it gives the same numbers), the
engine version, which calibration profile each GPU kind used and its fit error, what the
telemetry measured (utilization, GPU-hours, cost) beside the simulated baseline and the gap
between them, each strategy's result, the combined plan, per-deployment data gaps (not
enough data is an answer, not a crash), timings and progress. Scheduled assessments link to
the previous one of their cluster for a trend.

`DeploymentSlo` holds a deployment's objectives; a field left empty means the default
(`SLO_DEFAULTS`), and assessments say which values were defaults. With them, the redundancy
rule `min_replicas`: the fewest replicas a plan keeps (empty: 2 where today runs 2 or more,
`advisor.engine.redundancy`; 0: no minimum). Values lie in
`advisor.engine.bounds` (checked by the admin and the database, as the engine checks them).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from advisor.engine.bounds import (
    MAX_QUALITY_LOSS_POINTS,
    MIN_REPLICAS,
    SLO_BOUNDS,
    TPOT_P95_S,
    TTFT_P95_S,
    WINDOW_DAYS,
)
from probes.bounds import InBound, in_bound_constraint
from probes.models import Cluster, ModelDeployment

# Objectives used when a deployment has none set: interactive chat serving (TTFT p95 2 s,
# TPOT p95 100 ms = 10 tokens/s per stream) and at most 1 point of benchmark accuracy lost.
SLO_DEFAULTS: dict[str, float] = {
    "ttft_p95_s": 2.0,
    "tpot_p95_s": 0.1,
    "max_quality_loss_points": 1.0,
}


class DeploymentSlo(models.Model):
    """A deployment's service-level objectives; empty fields fall back to `SLO_DEFAULTS`."""

    deployment = models.OneToOneField(ModelDeployment, on_delete=models.CASCADE, related_name="slo")
    ttft_p95_s = models.FloatField(
        null=True, blank=True, validators=[InBound("ttft_p95_s")],
        help_text=f"time to first token, p95; {TTFT_P95_S.text}",
    )  # fmt: skip
    tpot_p95_s = models.FloatField(
        null=True, blank=True, validators=[InBound("tpot_p95_s")],
        help_text=f"time per output token, p95; {TPOT_P95_S.text}",
    )  # fmt: skip
    max_quality_loss_points = models.FloatField(
        null=True, blank=True, validators=[InBound("max_quality_loss_points")],
        help_text="largest accuracy loss (points) a quantization may cost; "
        f"{MAX_QUALITY_LOSS_POINTS.text}",
    )  # fmt: skip
    min_replicas = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[InBound("min_replicas")],
        verbose_name="minimum replicas (redundancy)",
        help_text="the fewest replicas any plan keeps (N+1: 2 survives one failure); empty: "
        "2 where today runs 2 or more, else no minimum; 0: no minimum (may scale to zero); "
        f"{MIN_REPLICAS.text}",
    )  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "deployment SLO"
        constraints = [
            *(
                in_bound_constraint(model="deploymentslo", field=name, bound=bound, null=True)
                for name, bound in SLO_BOUNDS.items()
            ),
            in_bound_constraint(
                model="deploymentslo", field="min_replicas", bound=MIN_REPLICAS, null=True
            ),
        ]

    def __str__(self) -> str:
        return f"SLO of {self.deployment}"


class AssessmentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class AssessmentSchedule(models.Model):
    """A cluster's recurring assessment: a django-celery-beat task (editable in the admin)."""

    cluster = models.OneToOneField(
        Cluster, on_delete=models.CASCADE, related_name="assessment_schedule"
    )
    window_days = models.PositiveSmallIntegerField(
        default=7, validators=[InBound("window_days")], help_text=WINDOW_DAYS.text
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assessment_schedule",
    )

    class Meta:
        constraints = [
            in_bound_constraint(model="assessmentschedule", field="window_days", bound=WINDOW_DAYS)
        ]

    def __str__(self) -> str:
        return f"assessment schedule of {self.cluster} ({self.window_days} d)"


class Assessment(models.Model):
    """One assessment of a cluster over [window_start, window_end).

    JSON fields (all written by `advisor.services.assessments`):
    - `scenario` (text): the engine's input, `Scenario.to_json()`; re-running it repeats the
      numbers; `scenario_digest` is its SHA-256.
    - `inputs`: how each input was derived (sources, coverage, defaults used), for the page.
    - `calibration`: per GPU kind, the profile used ({source, record_id, fit_median_ape}).
    - `measured`: utilization, GPU-hours and cost from telemetry, per deployment and fleet.
    - `baseline`: the engine's simulation of today's configuration; `gap`: measured - simulated.
    - `strategies`: each strategy's result per deployment; `plan`: the combined plan.
    - `data_gaps`: per deployment not assessed, what is missing and what would be enough.
    - `timings`: seconds per phase; `trend`: change since `previous`.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="assessments")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=AssessmentStatus.choices, default=AssessmentStatus.QUEUED
    )
    progress = models.FloatField(default=0.0, help_text="0..1")
    progress_message = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    engine_version = models.CharField(max_length=64, blank=True)
    # The canonical JSON text, byte for byte (a jsonb column would re-spell numbers).
    scenario = models.TextField(blank=True)
    scenario_digest = models.CharField(max_length=64, blank=True, help_text="SHA-256")
    inputs = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(default=dict, blank=True)
    measured = models.JSONField(default=dict, blank=True)
    baseline = models.JSONField(default=dict, blank=True)
    gap = models.JSONField(default=dict, blank=True)
    strategies = models.JSONField(default=dict, blank=True)
    plan = models.JSONField(default=dict, blank=True)
    data_gaps = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    trend = models.JSONField(default=dict, blank=True)
    previous = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="next_assessments"
    )
    schedule = models.ForeignKey(
        AssessmentSchedule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assessments",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Kept fresh by the running task's worker; a stale one means the worker died
    # (`advisor.services.reaper` then fails the assessment).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_assessment", "Can start assessments")]
        indexes = [
            # Serves "this cluster's assessments, newest first" (pages, previous-for-trend).
            models.Index(fields=["cluster", "created_at"], name="assessment_cluster_created"),
            # Serves the reaper's "running assessments whose heartbeat is stale" (every minute).
            models.Index(
                fields=["heartbeat_at"],
                condition=models.Q(status="running"),
                name="assessment_running_heartbeat",
            ),
        ]

    def __str__(self) -> str:
        return f"assessment #{self.pk} of {self.cluster_id} ({self.status})"
