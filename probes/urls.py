"""Ingest API routes (mounted under /api/v1/ by config.urls)."""

from django.urls import URLPattern, URLResolver, path

from probes.api import IngestView
from probes.api_node_config import NodeConfigView

app_name = "probes"
urlpatterns: list[URLPattern | URLResolver] = [
    path("ingest/", IngestView.as_view(), name="ingest"),
    path("agent/config/", NodeConfigView.as_view(), name="agent-config"),
]
