"""Per-request records (proxy, imports, benchmarks), their rollups, and trace imports."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from probes.models.inventory import ModelDeployment
from probes.models.telemetry import RollupResolution


class TraceFormat(models.TextChoices):
    AZURE = "azure", "Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens)"
    BURSTGPT = "burstgpt", "BurstGPT (Timestamp, Model, Request tokens, Response tokens, ...)"
    MOONCAKE = (
        "mooncake",
        ("Mooncake JSON lines (timestamp ms, input_length, output_length[, hash_ids])"),
    )
    VLLM_BENCH = "vllm-bench", "vllm bench serve --save-result --save-detailed JSON"
    CSV = "csv", "CSV: arrival_ts, prompt_tokens, output_tokens[, ttft_s, e2e_s, status]"


class TraceShift(models.TextChoices):
    NONE = "", "not shifted"
    START_AT = "start_at", "start at"
    END_NOW = "end_now", "end now"


class TraceImport(models.Model):
    """One imported trace file; deleting it deletes the requests it brought in.

    A shifted import keeps its provenance: the file's own first and last arrival
    (`original_*`), how it was shifted and by how much (`shift_s`, added to every arrival).
    """

    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.CASCADE, related_name="trace_imports"
    )
    format = models.CharField(max_length=16, choices=TraceFormat.choices)
    file_name = models.CharField(max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    request_count = models.PositiveIntegerField()
    first_arrival_ts = models.DateTimeField(null=True, blank=True)
    last_arrival_ts = models.DateTimeField(null=True, blank=True)
    shift = models.CharField(max_length=8, choices=TraceShift.choices, blank=True, default="")
    shift_s = models.FloatField(default=0.0, help_text="seconds added to every arrival")
    original_first_arrival_ts = models.DateTimeField(null=True, blank=True)
    original_last_arrival_ts = models.DateTimeField(null=True, blank=True)
    # Set once the request rollups of [first_arrival_ts, last_arrival_ts] were recomputed.
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    # Share of the file's prompt tokens in blocks seen earlier in it (block hashes, in arrival
    # order, no cache limit); None when its requests carry no block hashes.
    prefix_reuse_share = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.format}, {self.request_count} requests)"

    @property
    def prefix_reuse_text(self) -> str:
        return prefix_reuse_text(self.prefix_reuse_share)

    @property
    def shift_text(self) -> str:
        """The offset applied, e.g. "+781 d 15:45:51" (empty when not shifted)."""
        return offset_text(self.shift_s) if self.shift else ""


def prefix_reuse_text(share: float | None) -> str:
    """ "prefix reuse 43% of prompt tokens (block hashes)", or that it is unknown."""
    if share is None:
        return "prefix reuse unknown (no block hashes)"
    return f"prefix reuse {share:.0%} of prompt tokens (block hashes)"


def offset_text(seconds: float) -> str:
    """+781 d 15:45:51, -0 d 00:00:02.5"""
    sign = "-" if seconds < 0 else "+"
    whole, frac = divmod(abs(seconds), 1.0)
    days, rest = divmod(int(whole), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = f"{frac:.6f}".rstrip("0").rstrip(".")[1:] if frac >= 5e-7 else ""
    return f"{sign}{days} d {hours:02d}:{minutes:02d}:{secs:02d}{fraction}"


class RequestStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"
    ABORTED = "aborted", "Aborted"


class RequestSource(models.TextChoices):
    PROXY = "proxy", "Agent recording proxy"
    IMPORT = "import", "Imported trace"
    BENCHMARK = "benchmark", "Benchmark job"
    DERIVED = "derived", "Derived from vLLM histograms"


class RequestRecord(models.Model):
    """One LLM request: when it arrived, how long it was, how fast it was served."""

    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.CASCADE, related_name="requests"
    )
    arrival_ts = models.DateTimeField()
    prompt_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    ttft_s = models.FloatField(null=True, blank=True)
    e2e_s = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=RequestStatus.choices, default=RequestStatus.OK)
    source = models.CharField(max_length=10, choices=RequestSource.choices)
    # The import that brought this record in (None for proxy, benchmark and derived records).
    trace_import = models.ForeignKey(
        TraceImport, on_delete=models.CASCADE, null=True, blank=True, related_name="requests"
    )
    # The prompt's block hashes (a JSON list of integers; block j hashes the prompt up to the
    # end of block j) over blocks of `prefix_block_tokens`; None when unknown. Hashes only,
    # never prompt text.
    prefix_block_hashes = models.JSONField(null=True, blank=True)
    prefix_block_tokens = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            # Serves workload derivation: one deployment's requests in a time window, in order.
            models.Index(fields=["deployment", "arrival_ts"], name="request_deployment_arrival"),
            # Serves retention of proxy / derived records (imported traces are kept).
            models.Index(fields=["source", "arrival_ts"], name="request_source_arrival"),
        ]

    def __str__(self) -> str:
        tokens = f"{self.prompt_tokens}->{self.output_tokens}"
        return f"{self.deployment_id}@{self.arrival_ts:%H:%M:%S} {tokens}"


class RequestRollup(models.Model):
    """One deployment's requests (any source) that arrived in a 1-minute or 1-hour bucket.

    The load shape (daily / weekly) for assessments when no engine samples exist, e.g. for
    imported traces. Token and latency percentiles are over the bucket's requests.
    """

    deployment = models.ForeignKey(
        ModelDeployment, on_delete=models.CASCADE, related_name="request_rollups"
    )
    resolution = models.CharField(max_length=2, choices=RollupResolution.choices)
    bucket_start = models.DateTimeField()
    request_count = models.PositiveIntegerField()
    error_count = models.PositiveIntegerField(default=0)
    prompt_tokens_sum = models.BigIntegerField()
    output_tokens_sum = models.BigIntegerField()
    prompt_tokens_p50 = models.FloatField()
    prompt_tokens_p99 = models.FloatField()
    output_tokens_p50 = models.FloatField()
    output_tokens_p99 = models.FloatField()
    ttft_p50_s = models.FloatField(null=True, blank=True)
    ttft_p99_s = models.FloatField(null=True, blank=True)
    e2e_p50_s = models.FloatField(null=True, blank=True)
    e2e_p99_s = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            # Serves one deployment's load shape at one resolution; idempotent re-rollup.
            models.UniqueConstraint(
                fields=["deployment", "resolution", "bucket_start"],
                name="requestrollup_unique_bucket",
            ),
        ]
        indexes = [
            models.Index(fields=["resolution", "bucket_start"], name="requestrollup_res_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}@{self.bucket_start:%Y-%m-%d %H:%M} ({self.resolution})"
