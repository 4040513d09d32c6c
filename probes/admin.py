from django.contrib import admin

from probes import models


@admin.register(models.Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]


@admin.register(models.Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "cluster", "controller_kind", "last_seen"]
    list_filter = ["cluster", "controller_kind"]
    exclude = ["agent_token_hash"]


@admin.register(models.Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["uuid", "node", "index", "model_name", "memory_bytes"]
    list_filter = ["model_name"]


@admin.register(models.ModelDeployment)
class ModelDeploymentAdmin(admin.ModelAdmin):
    list_display = ["served_name", "cluster", "model_id", "replicas"]
    filter_horizontal = ["gpus"]


@admin.register(models.PriceSheet)
class PriceSheetAdmin(admin.ModelAdmin):
    list_display = ["gpu_kind", "usd_per_gpu_hour", "source", "as_of"]
