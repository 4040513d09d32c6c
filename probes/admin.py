from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from probes import models
from probes.services import node_token_rotate


@admin.register(models.Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]


@admin.register(models.Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "cluster", "controller_kind", "last_seen", "agent_version"]
    list_filter = ["cluster", "controller_kind"]
    exclude = ["agent_token_hash"]
    readonly_fields = [
        "last_seen", "agent_version", "host_info", "agent_dropped_records",
        "agent_dropped_batches", "agent_dead_letter_batches", "agent_dead_letter_last_error",
        "agent_dropped_prefix_hashes", "observed_config",
    ]  # fmt: skip
    actions = ["issue_agent_token"]

    @admin.action(description="Issue a new agent token (shown once; the old one stops working)")
    def issue_agent_token(self, request: HttpRequest, queryset: QuerySet[models.Node]) -> None:
        for node in queryset:
            token = node_token_rotate(node=node)
            self.message_user(
                request,
                f"Agent token for {node}: {token} (copy it now; it is stored hashed)",
                messages.WARNING,
            )

    def save_model(self, request: HttpRequest, obj: models.Node, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            token = node_token_rotate(node=obj)
            self.message_user(
                request,
                f"Agent token for {obj}: {token} (copy it now; it is stored hashed)",
                messages.WARNING,
            )


@admin.register(models.Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["uuid", "node", "index", "model_name", "memory_bytes"]
    list_filter = ["model_name"]


@admin.register(models.ModelDeployment)
class ModelDeploymentAdmin(admin.ModelAdmin):
    list_display = ["served_name", "cluster", "model_id", "replicas"]
    filter_horizontal = ["gpus"]


@admin.register(models.TraceImport)
class TraceImportAdmin(admin.ModelAdmin):
    list_display = ["file_name", "format", "deployment", "request_count", "created_at"]
    list_filter = ["format"]
    readonly_fields = ["rolled_up_at"]


@admin.register(models.IngestBatch)
class IngestBatchAdmin(admin.ModelAdmin):
    list_display = [
        "batch_id", "node", "received_at", "gpu_samples", "engine_samples", "requests",
        "duplicate_rows",
    ]  # fmt: skip
    list_filter = ["node"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(models.PriceSheet)
class PriceSheetAdmin(admin.ModelAdmin):
    list_display = ["gpu_kind", "usd_per_gpu_hour", "source", "as_of"]


@admin.register(models.GpuMove)
class GpuMoveAdmin(admin.ModelAdmin):
    """Read-only: moves and refused claims are written by ingest; an admin moves a GPU by
    changing its node on the GPU's own page."""

    list_display = ["gpu", "from_node", "to_node", "outcome", "attempts", "last_at", "reason"]
    list_filter = ["outcome"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
