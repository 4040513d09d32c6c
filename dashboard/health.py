"""`/healthz`: database and broker reachability as JSON, 503 when either is down."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from kombu import Connection
from kombu.exceptions import OperationalError

BROKER_TIMEOUT_S = 2.0


def check_database() -> dict[str, object]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0]}
    return {"ok": True, "vendor": connection.vendor}


def check_broker() -> dict[str, object]:
    if not settings.CELERY_BROKER_URL:
        return {"ok": True, "mode": "eager (no broker configured; tasks run in-process)"}
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
    except (OperationalError, OSError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "mode": "broker"}


@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"ok": healthy, **checks}, status=200 if healthy else 503)


healthz.required_role = "public"  # type: ignore[attr-defined]  # read by the URL-walk test
