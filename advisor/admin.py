"""Django admin of the advisor app: admins register benchmark endpoints here.

A benchmark endpoint is the only way a URL enters a benchmark job: operators pick one by id.
"""

from __future__ import annotations

from django.contrib import admin

from advisor.models import BenchmarkEndpoint, BenchmarkJob, CalibrationRecord


@admin.register(BenchmarkEndpoint)
class BenchmarkEndpointAdmin(admin.ModelAdmin):
    list_display = ("__str__", "base_url", "api", "hardware", "max_concurrency", "max_duration_s")
    list_select_related = ("node", "deployment")


@admin.register(BenchmarkJob)
class BenchmarkJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "endpoint", "status", "progress", "created_by", "created_at")
    list_filter = ("status", "kind")
    readonly_fields = ("spec", "result", "error", "progress", "started_at", "finished_at")


@admin.register(CalibrationRecord)
class CalibrationRecordAdmin(admin.ModelAdmin):
    list_display = ("hardware", "engine", "fit_median_ape", "active", "source_job", "created_at")
    list_filter = ("hardware", "active")
