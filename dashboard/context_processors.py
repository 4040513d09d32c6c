"""Template context every page needs: whether background work runs inline."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def task_mode(request: HttpRequest) -> dict[str, bool]:
    """`tasks_inline`: no Celery broker, so tasks run in the web process and beat never fires."""
    return {"tasks_inline": bool(settings.CELERY_TASK_ALWAYS_EAGER)}
