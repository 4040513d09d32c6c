"""Bookkeeping of agent batches: a repeated batch id is recognised as already stored."""

from __future__ import annotations

from django.db import models

from probes.models.inventory import Node


class IngestBatch(models.Model):
    """One batch an agent pushed, stored in the same transaction as its rows.

    Its presence is the proof the batch's rows are stored, so a retry of the same batch id
    (the agent never learnt the first try succeeded) is answered "already stored".
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="ingest_batches")
    batch_id = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    gpu_samples = models.PositiveIntegerField(default=0)
    engine_samples = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    # Rows of this batch already present from another batch (same GPU and instant).
    duplicate_rows = models.PositiveIntegerField(default=0)
    # The time span the batch's rows cover: what the rollup task must recompute.
    min_ts = models.DateTimeField(null=True, blank=True)
    max_ts = models.DateTimeField(null=True, blank=True)
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    # SHA-256 of the batch's rows: the same id re-sent with other rows is a conflict, not a
    # duplicate ("" for batches stored before it was recorded).
    rows_digest = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "batch_id"], name="ingestbatch_unique_id"),
        ]
        indexes = [
            # Serves the rollup task's "batches not rolled up yet" and retention deletes.
            models.Index(fields=["rolled_up_at", "received_at"], name="ingestbatch_rollup"),
            models.Index(fields=["received_at"], name="ingestbatch_received"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}:{self.batch_id}"
