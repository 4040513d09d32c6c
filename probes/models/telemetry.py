"""GPU samples and vLLM engine samples over time, and their 1-minute / 1-hour rollups."""

from __future__ import annotations

from django.db import models

from probes.models.inventory import Gpu, ModelDeployment, Node


class GpuSample(models.Model):
    """One telemetry sample of one GPU (NVML, DCGM or Prometheus).

    The primary key is (gpu, ts): the table grows by one row per GPU per second, and one
    index instead of three (id, unique (gpu, ts), ts) roughly halved the cost of bulk
    ingest. Window reads over all GPUs and retention deletes use a BRIN index on ts, created
    on PostgreSQL by migration 0004 (a plain index on SQLite).
    """

    pk = models.CompositePrimaryKey("gpu", "ts")
    # No database FK constraint and no FK index: the constraint's per-row trigger doubled the
    # cost of bulk ingest, the ingest service only writes GPU ids it just read, Django still
    # cascades deletes, and the (gpu, ts) unique index below serves lookups by GPU.
    gpu = models.ForeignKey(
        Gpu, on_delete=models.CASCADE, related_name="samples", db_constraint=False, db_index=False
    )
    ts = models.DateTimeField()
    util_pct = models.FloatField()
    mem_used_bytes = models.BigIntegerField()
    power_w = models.FloatField(null=True, blank=True)
    energy_j = models.FloatField(null=True, blank=True, help_text="Cumulative since driver load")
    sm_clock_mhz = models.FloatField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    # DCGM profiling fields (0..1), present only where DCGM or NVML GPM provides them.
    sm_active = models.FloatField(null=True, blank=True)
    sm_occupancy = models.FloatField(null=True, blank=True)
    tensor_active = models.FloatField(null=True, blank=True)
    dram_active = models.FloatField(null=True, blank=True)

    # The primary key serves "samples of one GPU in [t0, t1)" (node pages, rollups) and
    # makes a re-delivered sample impossible to store twice.

    def __str__(self) -> str:
        return f"{self.gpu_id}@{self.ts:%Y-%m-%d %H:%M:%S} {self.util_pct:.0f}%"


# A minute is idle when its GPU's utilization never reached this (the peak of the minute's
# samples is below it). Idle time is counted in minutes at every resolution: an hour rollup
# stores how many of its minutes were idle (`GpuRollup.idle_minutes`).
IDLE_UTIL_PCT = 5.0


class RollupResolution(models.TextChoices):
    MINUTE = "1m", "1 minute"
    HOUR = "1h", "1 hour"


class GpuRollup(models.Model):
    """Per-GPU aggregate over a 1-minute or 1-hour bucket."""

    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="rollups")
    resolution = models.CharField(max_length=2, choices=RollupResolution.choices)
    bucket_start = models.DateTimeField()
    sample_count = models.PositiveIntegerField()
    util_mean_pct = models.FloatField()
    util_p95_pct = models.FloatField()
    util_max_pct = models.FloatField()
    mem_used_mean_bytes = models.BigIntegerField()
    mem_used_max_bytes = models.BigIntegerField()
    power_mean_w = models.FloatField(null=True, blank=True)
    sm_active_mean = models.FloatField(null=True, blank=True)
    # Minutes of the bucket whose peak utilization stayed below IDLE_UTIL_PCT (a minute
    # bucket: 0 or 1; an hour: 0..60), so an hour read for a long window counts its idle
    # minutes rather than only a wholly idle hour. The database default (0) serves writers
    # that predate the column; every writer here sets it.
    idle_minutes = models.PositiveSmallIntegerField(db_default=0)

    class Meta:
        constraints = [
            # Serves "rollups of one GPU at one resolution in a window" and idempotent re-rollup.
            models.UniqueConstraint(
                fields=["gpu", "resolution", "bucket_start"], name="gpurollup_unique_bucket"
            ),
        ]
        indexes = [
            # Serves the fleet heatmap: every GPU's buckets at one resolution in a window.
            models.Index(fields=["resolution", "bucket_start"], name="gpurollup_res_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id}@{self.bucket_start:%Y-%m-%d %H:%M} ({self.resolution})"


class EngineSample(models.Model):
    """One scrape of one vLLM server (`instance`) serving a deployment.

    Gauges as read; counters as cumulative totals since the server started (they fall back
    to zero when it restarts) plus the per-second rates since the previous scrape. Histograms
    (cumulative buckets, sum, count, as `probes.agent.vllm_metrics.Histogram.to_json`) are
    attached to some samples only (the agent adds them every push interval), keyed by the
    canonical vLLM name, e.g. "time_to_first_token_seconds".
    """

    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.CASCADE, related_name="engine_samples"
    )
    node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="engine_samples"
    )
    # Which server of the deployment: "<hostname>:<port>" from an agent, Prometheus' instance.
    instance = models.CharField(max_length=255)
    ts = models.DateTimeField()
    num_requests_running = models.FloatField()
    num_requests_waiting = models.FloatField()
    kv_cache_usage = models.FloatField(null=True, blank=True, help_text="0..1")
    prompt_tokens_total = models.FloatField(null=True, blank=True)
    generation_tokens_total = models.FloatField(null=True, blank=True)
    requests_finished_total = models.FloatField(null=True, blank=True)
    preemptions_total = models.FloatField(null=True, blank=True)
    prompt_tokens_per_s = models.FloatField(null=True, blank=True)
    generation_tokens_per_s = models.FloatField(null=True, blank=True)
    requests_per_s = models.FloatField(null=True, blank=True)
    preemptions_per_s = models.FloatField(null=True, blank=True)
    spec_decode_drafts_total = models.FloatField(null=True, blank=True)
    spec_decode_draft_tokens_total = models.FloatField(null=True, blank=True)
    spec_decode_accepted_tokens_total = models.FloatField(null=True, blank=True)
    histograms = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            # A re-delivered scrape is stored once.
            models.UniqueConstraint(
                fields=["deployment", "instance", "ts"], name="enginesample_unique_instance_ts"
            ),
        ]
        indexes = [
            # Serves "one deployment's samples in [t0, t1)" (dashboard series, rollups).
            models.Index(fields=["deployment", "ts"], name="enginesample_deployment_ts"),
            # Serves retention deletes and fleet-wide window reads.
            models.Index(fields=["ts"], name="enginesample_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}/{self.instance}@{self.ts:%Y-%m-%d %H:%M:%S}"


class EngineRollup(models.Model):
    """One deployment's vLLM load over a 1-minute or 1-hour bucket, all its servers together.

    Gauges are summed over servers (running, waiting) or averaged (KV usage); counter
    increases are summed; `histograms` hold the observations made inside the bucket.
    """

    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.CASCADE, related_name="engine_rollups"
    )
    resolution = models.CharField(max_length=2, choices=RollupResolution.choices)
    bucket_start = models.DateTimeField()
    sample_count = models.PositiveIntegerField()
    running_mean = models.FloatField()
    running_max = models.FloatField()
    waiting_mean = models.FloatField()
    waiting_max = models.FloatField()
    kv_cache_usage_mean = models.FloatField(null=True, blank=True)
    kv_cache_usage_max = models.FloatField(null=True, blank=True)
    prompt_tokens = models.FloatField(default=0.0)
    generation_tokens = models.FloatField(default=0.0)
    requests = models.FloatField(default=0.0)
    preemptions = models.FloatField(default=0.0)
    spec_decode_drafts = models.FloatField(null=True, blank=True)
    spec_decode_draft_tokens = models.FloatField(null=True, blank=True)
    spec_decode_accepted_tokens = models.FloatField(null=True, blank=True)
    ttft_p50_s = models.FloatField(null=True, blank=True)
    ttft_p90_s = models.FloatField(null=True, blank=True)
    ttft_p99_s = models.FloatField(null=True, blank=True)
    itl_p50_s = models.FloatField(null=True, blank=True)
    itl_p99_s = models.FloatField(null=True, blank=True)
    e2e_p50_s = models.FloatField(null=True, blank=True)
    e2e_p90_s = models.FloatField(null=True, blank=True)
    e2e_p99_s = models.FloatField(null=True, blank=True)
    histograms = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # Serves one deployment's series at one resolution; makes re-rollup idempotent.
            models.UniqueConstraint(
                fields=["deployment", "resolution", "bucket_start"],
                name="enginerollup_unique_bucket",
            ),
        ]
        indexes = [
            # Serves retention deletes and fleet-wide reads at one resolution.
            models.Index(fields=["resolution", "bucket_start"], name="enginerollup_res_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}@{self.bucket_start:%Y-%m-%d %H:%M} ({self.resolution})"
