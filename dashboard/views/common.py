"""What the pages share: the cluster filter and the page context around a window."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard.windows import PRESETS, Window
from probes.models import Cluster


def cluster_from(request: HttpRequest) -> tuple[Cluster | None, list[str]]:
    """`?cluster=<name>`: the cluster, or None for all; an unknown name is reported."""
    name = request.GET.get("cluster") or ""
    if not name:
        return None, []
    cluster = Cluster.objects.filter(name=name).first()
    if cluster is None:
        return None, [f"cluster: no cluster named {name!r}; showing all clusters"]
    return cluster, []


def window_context(request: HttpRequest, window: Window, **keep: str) -> dict[str, Any]:
    """Links for the window selector that keep the page's other parameters."""
    return {
        "window": window,
        "window_links": [
            {"key": key, "query": _query(key, window, keep), "active": key == window.key}
            for key in PRESETS
        ],
        "errors": list(window.errors),
    }


def _query(key: str, window: Window, keep: dict[str, str]) -> str:
    shifted = Window(key, window.end - PRESETS[key], window.end, end_given=window.end_given)
    return shifted.query(**keep)
