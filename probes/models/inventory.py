"""Fleet inventory: clusters, nodes (with their agent token), GPUs, deployments, prices."""

from __future__ import annotations

import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.db import models

from advisor.engine.bounds import PRICE_AS_OF, PRICE_USD_PER_GPU_HOUR, REPLICAS
from probes.bounds import InBound, in_bound_constraint


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
    # What the agent last reported about the machine (OS, CPUs, memory, driver, samplers).
    host_info = models.JSONField(default=dict, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    # Records the agent had to drop because its on-disk spool reached its cap (cumulative).
    agent_dropped_records = models.BigIntegerField(default=0)
    agent_dropped_batches = models.BigIntegerField(default=0)
    # Batches the server refused for good (400), which the agent moved to its dead-letter file.
    agent_dead_letter_batches = models.BigIntegerField(default=0)
    agent_dead_letter_last_error = models.CharField(max_length=500, blank=True)
    # Requests the recording proxy recorded without prompt block hashes because its hash
    # queue was full (cumulative): prefix reuse is then measured on fewer requests.
    agent_dropped_prefix_hashes = models.BigIntegerField(default=0)
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
    # The node whose batch created it (None: created by an admin, a trace import, the demo);
    # ingest caps how many deployments one node may create.
    created_by_node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    replicas = models.PositiveIntegerField(default=1, validators=[InBound("replicas")])
    created_at = models.DateTimeField(auto_now_add=True)
    # The served model's Hugging Face config.json, from the node's agent or uploaded by an
    # operator (`probes.services.hf_config`): assessments model the deployment from it, so a
    # model outside the engine's catalog needs no path typed anywhere. The latest report wins,
    # whoever made it; `hf_config_source` says who ("agent gpu-1" / "uploaded by alice").
    hf_config = models.JSONField(null=True, blank=True)
    hf_config_source = models.CharField(max_length=255, blank=True, default="")
    hf_config_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cluster__name", "served_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "served_name"], name="deployment_unique_served_name"
            ),
            in_bound_constraint(model="deployment", field="replicas", bound=REPLICAS),
        ]
        permissions = [("import_trace", "Can import request traces")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.served_name}"


class PriceSheet(models.Model):
    """What one GPU-hour of a GPU kind costs this organisation, with where the figure came from.

    `gpu_kind` is a catalog name (an alias is saved as the catalog's name) or the NVML name of
    a GPU in the inventory that the catalog does not know (`probes.gpu_kinds`); the price and
    the date lie in `advisor.engine.bounds`, checked here and by the database.
    """

    gpu_kind = models.CharField(
        max_length=64,
        unique=True,
        help_text="Catalog name, e.g. H100-SXM, or the NVML name of a GPU the catalog lacks",
    )
    usd_per_gpu_hour = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        validators=[InBound("usd_per_gpu_hour")],
        help_text=f"Must be {PRICE_USD_PER_GPU_HOUR.text}",
    )
    source = models.CharField(max_length=255)
    as_of = models.DateField(validators=[InBound("as_of")], help_text=f"Must be {PRICE_AS_OF.text}")

    class Meta:
        ordering = ["gpu_kind"]
        constraints = [
            in_bound_constraint(
                model="pricesheet", field="usd_per_gpu_hour", bound=PRICE_USD_PER_GPU_HOUR
            ),
            in_bound_constraint(model="pricesheet", field="as_of", bound=PRICE_AS_OF),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_kind}: ${self.usd_per_gpu_hour}/GPU-h ({self.source}, {self.as_of})"

    def clean(self) -> None:
        """A kind nobody can match is refused: its price would never apply to any GPU."""
        from probes.gpu_kinds import price_kind_problem, price_kind_resolve

        kind = (self.gpu_kind or "").strip()
        problem = price_kind_problem(kind)
        if problem:
            raise ValidationError({"gpu_kind": problem})
        self.gpu_kind = price_kind_resolve(kind)


class GpuMoveOutcome(models.TextChoices):
    MOVED = "moved", "Moved"
    REFUSED = "refused", "Refused"


class GpuMove(models.Model):
    """A GPU reported by a node other than the one it is registered to: moved, or refused.

    Ingest moves a GPU only within its cluster, and only once the old node has stopped
    reporting it; any other claim is refused and kept here (one row per GPU and claimant,
    counting the attempts) so that an admin sees it on both nodes' pages.
    """

    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="moves")
    from_node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpu_moves_out")
    to_node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpu_moves_in")
    outcome = models.CharField(max_length=16, choices=GpuMoveOutcome.choices)
    reason = models.CharField(max_length=255)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_at"]
        indexes = [models.Index(fields=["gpu", "to_node", "outcome"], name="gpumove_claim")]

    def __str__(self) -> str:
        return f"{self.gpu_id}: {self.from_node_id} -> {self.to_node_id} {self.outcome}"
