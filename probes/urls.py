"""Ingest API routes (mounted under /api/v1/ by config.urls)."""

from django.urls import URLPattern, URLResolver, path

from probes.api import IngestView

app_name = "probes"
urlpatterns: list[URLPattern | URLResolver] = [
    path("ingest/", IngestView.as_view(), name="ingest"),
]
