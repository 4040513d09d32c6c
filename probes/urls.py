"""Ingest API routes (mounted under /api/v1/ by config.urls)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
