"""Rollouts: a ConfigChange applied to managed vLLM nodes, canary first, gated, reversible.

- `ConfigChange`: what to apply, self-contained (vLLM engine args, model or quantized
  checkpoint path, replicas, autoscaling manifest) plus the projection it came with (from a
  recommendation of an assessment, or empty when written by hand).
- `Rollout`: one application of a change to chosen nodes. Its status is a persisted state
  machine, pending -> canary -> progressing -> done | rolled_back | failed | aborted, with
  `rolling_back` while touched nodes are being restored. Every transition is a
  `RolloutEvent` (who, when, why). Operators propose; only admins approve, start, pause,
  abort and roll back (the permissions below; admins hold every permission of our apps).
- `RolloutTarget`: one node of a rollout with its step state (what it ran before, the
  generations written to it, bake start, gate results), so a worker that dies mid-step
  resumes from the database. An active target holds its node: a partial unique constraint
  makes a second concurrent rollout to the same node impossible, even under a race.
- `LedgerEntry`: the realized-savings ledger: the projection beside what telemetry measured
  before and after the change, flagged when realized savings fall below half the projection
  or the SLO got worse.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from probes.models import ModelDeployment, Node


class ChangeSource(models.TextChoices):
    RECOMMENDATION = "recommendation", "From a recommendation"
    MANUAL = "manual", "Written by hand"


class ConfigChange(models.Model):
    """A serving configuration to apply, and the projection it came with.

    `engine_args`: vLLM engine args as JSON ({"max_num_seqs": 64, "enable_chunked_prefill":
    true, "speculative_config": {...}}); `model_path`: a new model or quantized checkpoint
    (empty: keep the node's); `replicas` and `autoscaling` (an HPA / KEDA manifest) are
    applied by controllers that manage replicas (Kubernetes); on nodes that run one local vLLM
    process a recommendation's replicas and autoscaling become `manual_steps` instead
    ([{"title", "detail", "manifest"}], carried out by a person). `projection` (see
    `advisor.rollouts.ledger.PROJECTION_FIELDS`): {"baseline": {...}, "projected": {...}}.
    """

    deployment = models.ForeignKey(
        ModelDeployment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="config_changes",
    )
    title = models.CharField(max_length=200)
    engine_args = models.JSONField(default=dict, blank=True)
    model_path = models.CharField(max_length=500, blank=True)
    replicas = models.PositiveIntegerField(null=True, blank=True)
    autoscaling = models.JSONField(default=dict, blank=True)
    manual_steps = models.JSONField(default=list, blank=True)
    source = models.CharField(
        max_length=16, choices=ChangeSource.choices, default=ChangeSource.MANUAL
    )
    assessment = models.ForeignKey(
        "advisor.Assessment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="config_changes",
    )
    strategy = models.CharField(max_length=64, blank=True)
    projection = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"change #{self.pk} {self.title}"

    def node_config(self) -> dict[str, object]:
        """The part a node controller applies (what `Node.desired_config` carries)."""
        config: dict[str, object] = {"engine_args": dict(self.engine_args)}
        if self.model_path:
            config["model"] = self.model_path
        if self.replicas is not None:
            config["replicas"] = self.replicas
        if self.autoscaling:
            config["autoscaling"] = dict(self.autoscaling)
        return config


class RolloutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CANARY = "canary", "Canary"
    PROGRESSING = "progressing", "Progressing"
    ROLLING_BACK = "rolling_back", "Rolling back"
    DONE = "done", "Done"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"


# A worker advances these; the others wait for a person (pending) or are over.
ACTIVE_STATUSES = (RolloutStatus.CANARY, RolloutStatus.PROGRESSING, RolloutStatus.ROLLING_BACK)
TERMINAL_STATUSES = (
    RolloutStatus.DONE,
    RolloutStatus.ROLLED_BACK,
    RolloutStatus.FAILED,
    RolloutStatus.ABORTED,
)


class Rollout(models.Model):
    """One application of a ConfigChange to a set of nodes (see the module docstring).

    `gates`: {"ttft_p95_s", "tpot_p95_s", "max_error_rate", "min_requests", "defaults": [names
    taken from the deployment SLO or defaults]}. `lease_owner` / `lease_until` is the claim of
    the worker currently advancing it (a dead worker's lease expires and another resumes).
    """

    change = models.ForeignKey(ConfigChange, on_delete=models.PROTECT, related_name="rollouts")
    status = models.CharField(
        max_length=12, choices=RolloutStatus.choices, default=RolloutStatus.PENDING
    )
    paused = models.BooleanField(default=False)
    reason = models.TextField(blank=True, help_text="why it was proposed")
    outcome = models.TextField(blank=True, help_text="why it ended as it did")
    max_unavailable = models.PositiveSmallIntegerField(default=1)
    canary_bake_s = models.PositiveIntegerField(default=600)
    bake_s = models.PositiveIntegerField(default=300)
    apply_timeout_s = models.PositiveIntegerField(default=900)
    probe_interval_s = models.FloatField(default=5.0)
    ledger_window_s = models.PositiveIntegerField(default=3600)
    gates = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_step_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("propose_rollout", "Can propose rollouts"),
            ("approve_rollout", "Can approve a rollout as the second approver"),
            ("start_rollout", "Can start rollouts"),
            ("pause_rollout", "Can pause and resume rollouts"),
            ("abort_rollout", "Can abort rollouts"),
            ("rollback_rollout", "Can roll back rollouts"),
        ]
        indexes = [
            # Serves the watchdog's "active rollouts whose lease expired".
            models.Index(fields=["status", "lease_until"], name="rollout_status_lease"),
        ]

    def __str__(self) -> str:
        return f"rollout #{self.pk} ({self.status})"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class TargetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLYING = "applying", "Applying"
    BAKING = "baking", "Baking"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    UNTOUCHED = "untouched", "Untouched"


class RolloutTarget(models.Model):
    """One node of a rollout and its persisted step state; `batch` 0 is the canary."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="targets")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="rollout_targets")
    position = models.PositiveSmallIntegerField()
    batch = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=12, choices=TargetStatus.choices, default=TargetStatus.PENDING
    )
    # True while the rollout is not over: holds the node against other rollouts.
    active = models.BooleanField(default=True)
    previous_config = models.JSONField(null=True, blank=True, help_text="restore point")
    desired_generation = models.PositiveIntegerField(null=True, blank=True)
    rollback_generation = models.PositiveIntegerField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    bake_started_at = models.DateTimeField(null=True, blank=True)
    bake_start = models.JSONField(null=True, blank=True, help_text="observed report at bake start")
    gate_results = models.JSONField(default=dict, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["rollout_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "node"], name="rollouttarget_unique_node"),
            # Two rollouts may never hold one node at once (checked by the service first,
            # with a clear message; this closes the race between two proposals).
            models.UniqueConstraint(
                fields=["node"], condition=Q(active=True), name="rollouttarget_one_active_per_node"
            ),
        ]

    def __str__(self) -> str:
        return f"rollout {self.rollout_id} node {self.node_id} ({self.status})"


class RolloutEvent(models.Model):
    """The audit trail: one row per transition, node step and gate verdict."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Who, as text that survives the user's deletion: a username, or "system" for the worker.
    actor_label = models.CharField(max_length=150)
    kind = models.CharField(max_length=16)  # transition | target | gate | note | refused
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    target = models.ForeignKey(
        RolloutTarget, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["rollout_id", "at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%F %T} {self.actor_label}: {self.message}"


class LedgerStatus(models.TextChoices):
    WAITING = "waiting", "Waiting for the measurement window"
    MEASURED = "measured", "Measured"
    NO_DATA = "no_data", "Not enough telemetry"


class LedgerEntry(models.Model):
    """Projection vs measurement of one applied change (see `advisor.rollouts.ledger`).

    `before` and `after` hold measured figures of the rollout's nodes over windows of equal
    length before the start and after the end (utilization, throughput, TTFT/TPOT p95, GPU
    count, USD per hour and per 1M tokens); `realized` the savings computed from them;
    `flags` the reasons a change is flagged (empty: it delivered).
    """

    rollout = models.OneToOneField(Rollout, on_delete=models.CASCADE, related_name="ledger")
    projection = models.JSONField(default=dict, blank=True)
    slo = models.JSONField(default=dict, blank=True)
    window_s = models.PositiveIntegerField()
    before_start = models.DateTimeField()
    before_end = models.DateTimeField()
    after_start = models.DateTimeField()
    after_end = models.DateTimeField()
    status = models.CharField(
        max_length=8, choices=LedgerStatus.choices, default=LedgerStatus.WAITING
    )
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    realized = models.JSONField(default=dict, blank=True)
    flagged = models.BooleanField(default=False)
    flags = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            # Serves "waiting entries whose window has ended" (the rollout watchdog).
            models.Index(fields=["status", "after_end"], name="ledger_status_due"),
        ]

    def __str__(self) -> str:
        return f"ledger of rollout {self.rollout_id} ({self.status})"
