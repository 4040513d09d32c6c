"""Django admin of the advisor app: admins register benchmark endpoints here.

A benchmark endpoint is the only way a URL enters a benchmark job: operators pick one by id.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from advisor.models import (
    Assessment,
    AssessmentSchedule,
    BenchmarkEndpoint,
    BenchmarkJob,
    CalibrationRecord,
    DeploymentSlo,
    LedgerEntry,
    Rollout,
    RolloutEvent,
)


@admin.register(BenchmarkEndpoint)
class BenchmarkEndpointAdmin(admin.ModelAdmin):
    list_display = ("__str__", "base_url", "api", "hardware", "max_concurrency", "max_duration_s")
    list_select_related = ("node", "deployment")


@admin.register(BenchmarkJob)
class BenchmarkJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "endpoint", "status", "progress", "created_by", "created_at")
    list_filter = ("status", "kind")
    readonly_fields = (
        "spec", "result", "error", "progress", "started_at", "heartbeat_at", "finished_at",
    )  # fmt: skip


@admin.register(CalibrationRecord)
class CalibrationRecordAdmin(admin.ModelAdmin):
    list_display = ("hardware", "engine", "fit_median_ape", "active", "source_job", "created_at")
    list_filter = ("hardware", "active")


@admin.register(DeploymentSlo)
class DeploymentSloAdmin(admin.ModelAdmin):
    """Empty fields mean the product defaults (advisor.models.SLO_DEFAULTS); an empty minimum
    replicas means the default redundancy rule (advisor.engine.redundancy)."""

    list_display = (
        "deployment", "ttft_p95_s", "tpot_p95_s", "max_quality_loss_points", "min_replicas",
    )  # fmt: skip
    list_select_related = ("deployment__cluster",)


@admin.register(AssessmentSchedule)
class AssessmentScheduleAdmin(admin.ModelAdmin):
    """The weekly run itself (crontab, enabled) is its PeriodicTask under Periodic Tasks."""

    list_display = ("cluster", "window_days", "periodic_task")


@admin.register(Assessment)
class AssessmentAdmin(admin.ModelAdmin):
    list_display = ("id", "cluster", "status", "progress", "window_end", "created_by", "created_at")
    list_filter = ("status", "cluster")
    readonly_fields = (
        "scenario_digest", "engine_version", "inputs", "calibration", "measured", "baseline",
        "gap", "strategies", "plan", "data_gaps", "timings", "trend", "progress", "error",
        "heartbeat_at",
    )  # fmt: skip
    exclude = ("scenario",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rollout state changes only through the services (audited); the admin shows them."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ("id", "change", "status", "paused", "created_by", "started_by", "created_at")
    list_filter = ("status",)


@admin.register(RolloutEvent)
class RolloutEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "rollout", "actor_label", "kind", "from_status", "to_status", "message")
    list_filter = ("kind",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("rollout", "status", "flagged", "measured_at")
    list_filter = ("status", "flagged")
