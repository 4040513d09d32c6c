"""Plotly figures to PNG, offline: kaleido drives the local Chromium with our Plotly.js.

kaleido 1.x renders in a headless Chrome it finds through `BROWSER_PATH` (else `chromium`
on PATH); we pass the browser path, the Plotly.js vendored under static/vendor (the same
file the pages load) and no MathJax, so nothing is fetched from a CDN. One browser renders
all the figures of a report (starting it costs seconds, each figure well under one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from django.conf import settings

PLOTLY_JS = Path(settings.BASE_DIR) / "static" / "vendor" / "plotly-4.1.1.min.js"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# kaleido and choreographer log every browser step at INFO; keep warnings only.
for _name in ("kaleido", "choreographer", "weasyprint"):
    logging.getLogger(_name).setLevel(logging.WARNING)
RENDER_TIMEOUT_S = 90.0


class ReportImageError(RuntimeError):
    """No browser to render with, or the browser failed: the message says which."""


def browser_path() -> str:
    """BROWSER_PATH if set, else the first Chromium/Chrome on PATH."""
    configured = os.environ.get("BROWSER_PATH")
    if configured:
        if not Path(configured).is_file():
            raise ReportImageError(f"BROWSER_PATH: no browser at {configured!r}")
        return configured
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ReportImageError(
        "no Chromium or Chrome found to render report charts: install the `chromium` "
        "package or set BROWSER_PATH"
    )


def figures_to_png(
    figures: Mapping[str, go.Figure], *, width: int = 900, scale: float = 2.0
) -> dict[str, bytes]:
    """PNG bytes of each figure (its own layout height), rendered in one browser session."""
    if not figures:
        return {}
    path = browser_path()
    result: dict[str, Any] = {}

    async def render_all() -> None:
        import kaleido

        async with kaleido.Kaleido(
            path=path, plotlyjs=str(PLOTLY_JS), mathjax=False, timeout=RENDER_TIMEOUT_S
        ) as renderer:
            for name, fig in figures.items():
                opts = {"format": "png", "width": width, "scale": scale}
                if fig.layout.height:
                    opts["height"] = fig.layout.height
                result[name] = await renderer.calc_fig(fig, opts=opts)

    _run(render_all())
    return {name: bytes(png) for name, png in result.items()}


def _run(coroutine: Any) -> None:
    """asyncio.run, in a thread when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            asyncio.run(coroutine)
        except ReportImageError:
            raise
        except Exception as exc:
            raise ReportImageError(f"rendering charts failed: {exc!r}") from exc
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            _run(coroutine)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
