"""Fleet inventory, GPU telemetry, request traces and prices.

Units are in the field names (`_bytes`, `_w`, `_j`, `_s`, `_pct`). Timestamps are aware UTC.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import models


class Cluster(models.Model):
    """A group of nodes assessed together (one region, one team, one Kubernetes cluster)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ControllerKind(models.TextChoices):
    LOCAL = "local", "Local vLLM process"
    KUBERNETES = "kubernetes", "Kubernetes Deployment"


class Node(models.Model):
    """A GPU machine running an agent; its token is stored only as a SHA-256 digest."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    hostname = models.CharField(max_length=253)
    labels = models.JSONField(default=dict, blank=True)
    # Agent tokens are 32 random bytes, so a plain SHA-256 is enough (no slow KDF needed).
    agent_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    controller_kind = models.CharField(
        max_length=16, choices=ControllerKind.choices, default=ControllerKind.LOCAL
    )
    # Engine args the node should run, and what the agent last reported it runs.
    desired_config = models.JSONField(default=dict, blank=True)
    observed_config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name", "hostname"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "hostname"], name="node_unique_hostname"),
        ]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.hostname}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue_token(self) -> str:
        """Create a new agent token, store its digest, and return the token (shown once)."""
        token = secrets.token_urlsafe(32)
        self.agent_token_hash = self.hash_token(token)
        return token


class Gpu(models.Model):
    """One GPU (or one MIG instance, whose `mig_parent` is the physical GPU)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    uuid = models.CharField(max_length=96, unique=True)
    index = models.PositiveSmallIntegerField()
    model_name = models.CharField(max_length=128, help_text="As NVML reports it")
    memory_bytes = models.BigIntegerField()
    mig_parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="mig_instances"
    )

    class Meta:
        ordering = ["node_id", "index"]

    def __str__(self) -> str:
        return f"{self.node.hostname}:{self.index} {self.model_name}"


class ModelDeployment(models.Model):
    """A model served by vLLM on some GPUs of a cluster, with its engine args."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="deployments")
    model_id = models.CharField(max_length=255, help_text="Hugging Face id or local path")
    served_name = models.CharField(max_length=255)
    # vLLM engine args as structured JSON, e.g. {"max_num_seqs": 256, "tensor_parallel_size": 1}.
    engine_args = models.JSONField(default=dict, blank=True)
    gpus = models.ManyToManyField(Gpu, related_name="deployments", blank=True)
    replicas = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name", "served_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "served_name"], name="deployment_unique_served_name"
            ),
        ]
        permissions = [("import_trace", "Can import request traces")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.served_name}"


class GpuSample(models.Model):
    """One telemetry sample of one GPU (NVML, DCGM or Prometheus)."""

    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="samples")
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

    class Meta:
        constraints = [
            # Serves "samples of one GPU in [t0, t1)" (node pages, rollups) and makes a
            # re-delivered sample impossible to store twice.
            models.UniqueConstraint(fields=["gpu", "ts"], name="gpusample_unique_gpu_ts"),
        ]
        indexes = [
            # Serves fleet-wide window reads ("all samples in [t0, t1)") and retention deletes.
            models.Index(fields=["ts"], name="gpusample_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id}@{self.ts:%Y-%m-%d %H:%M:%S} {self.util_pct:.0f}%"


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

    class Meta:
        indexes = [
            # Serves workload derivation: one deployment's requests in a time window, in order.
            models.Index(fields=["deployment", "arrival_ts"], name="request_deployment_arrival"),
        ]

    def __str__(self) -> str:
        tokens = f"{self.prompt_tokens}->{self.output_tokens}"
        return f"{self.deployment_id}@{self.arrival_ts:%H:%M:%S} {tokens}"


class PriceSheet(models.Model):
    """What one GPU-hour of a GPU kind costs this organisation, with where the figure came from."""

    gpu_kind = models.CharField(max_length=64, unique=True, help_text="Catalog name, e.g. H100-SXM")
    usd_per_gpu_hour = models.DecimalField(max_digits=10, decimal_places=4)
    source = models.CharField(max_length=255)
    as_of = models.DateField()

    class Meta:
        ordering = ["gpu_kind"]

    def __str__(self) -> str:
        return f"{self.gpu_kind}: ${self.usd_per_gpu_hour}/GPU-h ({self.source}, {self.as_of})"
