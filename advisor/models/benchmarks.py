"""Benchmark jobs against registered vLLM endpoints, their runs and requests, calibrations.

An admin registers a `BenchmarkEndpoint` (a deployment's OpenAI-compatible URL on a node of
the same cluster, with caps); operators start `BenchmarkJob`s only against registered
endpoints, never free-form URLs. A job is one run, a sweep, a goodput search or an A/B; each
measured run is a `BenchmarkRun` (summary named like `vllm bench serve`, server metrics, GPU
telemetry of its window, the engine's prediction and its error) with one `BenchmarkRequest`
per request. `CalibrationRecord`s are engine profiles fitted on runs, with their fit error.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from probes.gpu_kinds import validate_catalog_gpu_kind
from probes.models import ModelDeployment, Node


class ApiKind(models.TextChoices):
    COMPLETIONS = "completions", "/v1/completions"
    CHAT = "chat", "/v1/chat/completions"


class BenchmarkEndpoint(models.Model):
    """Where benchmark load may go: one deployment on one node, registered by an admin.

    `hardware`, `model_ref`, `quant` and `kv_cache_bytes` describe the node to the engine (a
    catalog GPU name, a catalog model or a config.json path, a precision) so runs can be
    predicted; empty `hardware` means no prediction. `local_launch` (python, model, port, env,
    engine_args) lets the bench worker restart a vLLM it owns on this machine for an A/B;
    empty means no A/B on this endpoint.
    """

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="benchmark_endpoints")
    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.PROTECT, related_name="benchmark_endpoints"
    )
    base_url = models.URLField(help_text="e.g. http://gpu-node-1:8000 (no path)")
    metrics_url = models.URLField(blank=True, help_text="default: base_url")
    api = models.CharField(max_length=12, choices=ApiKind.choices, default=ApiKind.COMPLETIONS)
    max_concurrency = models.PositiveIntegerField(default=256)
    max_duration_s = models.PositiveIntegerField(default=1800)
    max_requests = models.PositiveIntegerField(default=100_000)
    hardware = models.CharField(
        max_length=64, blank=True, validators=[validate_catalog_gpu_kind],
        help_text="catalog GPU name",
    )  # fmt: skip
    model_ref = models.CharField(max_length=255, blank=True, help_text="default: model_id")
    quant = models.CharField(max_length=32, default="bf16")
    kv_cache_bytes = models.BigIntegerField(null=True, blank=True)
    local_launch = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["node__hostname", "deployment__served_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "deployment"], name="benchmarkendpoint_unique_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.served_name} on {self.node.hostname}"

    def clean(self) -> None:
        if (
            self.node_id
            and self.deployment_id
            and self.node.cluster_id != self.deployment.cluster_id
        ):
            raise ValidationError({"deployment": "must belong to the node's cluster"})


class JobKind(models.TextChoices):
    RUN = "run", "One run"
    SWEEP = "sweep", "Sweep of rates or concurrencies"
    GOODPUT = "goodput", "Goodput search (highest rate meeting the SLO)"
    AB = "ab", "A/B of engine configurations"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class BenchmarkJob(models.Model):
    """One benchmark request; `spec` holds its validated inputs, `result` its job-level output.

    spec: {"workload": WorkloadSpec JSON, "trace": {...} | null, "sweep": {...} | null,
    "goodput": {...} | null, "ab": {...} | null, "slo": {...} | null, "options": {...}}.
    result: sweep/goodput outcome, the A/B comparison with predicted and measured deltas,
    the calibration made from it.
    """

    endpoint = models.ForeignKey(BenchmarkEndpoint, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=8, choices=JobKind.choices)
    spec = models.JSONField()
    max_concurrency = models.PositiveIntegerField()
    max_duration_s = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    progress = models.FloatField(default=0.0, help_text="0..1")
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Kept fresh by the running task's worker; a stale one means the worker died
    # (`advisor.services.reaper` then fails the job).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("run_benchmark", "Can start and cancel benchmark jobs")]
        indexes = [
            # Serves the worker's claim and the "running jobs" list.
            models.Index(fields=["status", "created_at"], name="benchmarkjob_status"),
        ]

    def __str__(self) -> str:
        return f"benchmark #{self.pk} {self.kind} on {self.endpoint_id} ({self.status})"


class BenchmarkRun(models.Model):
    """One measured run of a job (a sweep point, a goodput probe, an A/B side)."""

    job = models.ForeignKey(BenchmarkJob, on_delete=models.CASCADE, related_name="runs")
    sequence = models.PositiveIntegerField()
    label = models.CharField(max_length=128)
    value = models.FloatField(null=True, blank=True, help_text="the swept rate or concurrency")
    engine_args = models.JSONField(default=dict, blank=True, help_text="A/B variant's args")
    status = models.CharField(max_length=16)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    duration_s = models.FloatField()
    workload = models.JSONField(help_text="the WorkloadSpec this run used")
    summary = models.JSONField()
    server_metrics = models.JSONField(default=dict, blank=True)
    metrics_error = models.TextField(blank=True)
    prompts = models.JSONField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    meets_slo = models.BooleanField(null=True, blank=True)
    gpu_telemetry = models.JSONField(default=dict, blank=True)
    predicted = models.JSONField(default=dict, blank=True)
    prediction_error = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["job_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["job", "sequence"], name="benchmarkrun_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} run {self.sequence} {self.label}"


class BenchmarkRequest(models.Model):
    """One request of a run: when it was sent and how its stream was timed (seconds)."""

    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="requests")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=10)
    scheduled_s = models.FloatField()
    sent_s = models.FloatField(null=True, blank=True)
    queue_s = models.FloatField(default=0.0)
    ttft_s = models.FloatField(null=True, blank=True)
    tpot_s = models.FloatField(null=True, blank=True)
    e2e_s = models.FloatField(null=True, blank=True)
    itl_s = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    expected_prompt_tokens = models.PositiveIntegerField()
    expected_output_tokens = models.PositiveIntegerField()
    tokens_from_usage = models.BooleanField(default=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [
            # Serves reading one run's requests in order (exports).
            models.UniqueConstraint(fields=["run", "index"], name="benchmarkrequest_unique_index"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} request {self.index} ({self.status})"


class CalibrationRecord(models.Model):
    """An engine profile fitted on benchmark runs of one hardware kind, with its fit error.

    `profile` is `advisor.engine.perf.CalibrationProfile.to_dict()`; `errors` the per-point
    fit errors. The newest active record of a (hardware, engine) is what later assessments use.
    """

    hardware = models.CharField(max_length=64)
    engine = models.CharField(max_length=16, default="vllm")
    profile = models.JSONField()
    fitted = models.JSONField(help_text="names of the fitted parameters")
    errors = models.JSONField(help_text="[{label, measured, predicted, ape}]")
    fit_median_ape = models.FloatField()
    fit_mean_ape = models.FloatField()
    points = models.JSONField(help_text="the measured points fitted")
    source_job = models.ForeignKey(
        BenchmarkJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="calibrations"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Serves "the newest active profile for this hardware and engine".
            models.Index(
                fields=["hardware", "engine", "active", "created_at"], name="calib_lookup"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hardware}/{self.engine} fit {self.fit_median_ape:.1%} ({self.created_at:%F})"
