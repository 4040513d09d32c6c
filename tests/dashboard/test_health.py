from unittest import mock

import pytest
import redis
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.test import Client, override_settings

from tests.support.components import REDIS_URL, missing


@pytest.mark.django_db
def test_it_reports_database_and_eager_broker(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["database"]["ok"] is True
    assert body["broker"] == {
        "ok": True,
        "mode": "eager (no broker configured; tasks run in-process)",
    }


@pytest.mark.django_db
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_it_answers_503_when_the_broker_is_unreachable(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False


@pytest.mark.django_db
def test_it_answers_503_naming_the_database_when_it_is_down(client: Client) -> None:
    # Given the database refuses queries (the cursor raises as psycopg does when the
    # server is gone) while the broker is fine (eager mode)
    refused = OperationalError(
        "connection to server at 127.0.0.1, port 5432 failed: Connection refused\n"
        "\tIs the server running on that host and accepting TCP/IP connections?"
    )
    with mock.patch.object(connections[DEFAULT_DB_ALIAS], "cursor", side_effect=refused):
        response = client.get("/healthz")
    # Then the probe fails and says the database is the part that is down, first line only
    assert response.status_code == 503
    assert response.json() == {
        "ok": False,
        "database": {
            "ok": False,
            "error": "connection to server at 127.0.0.1, port 5432 failed: Connection refused",
        },
        "broker": {"ok": True, "mode": "eager (no broker configured; tasks run in-process)"},
    }


@pytest.mark.integration
@pytest.mark.django_db
def test_it_answers_200_when_the_database_and_a_real_broker_are_up(client: Client) -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        missing("Redis", f"{REDIS_URL}: {exc}")
    with override_settings(CELERY_BROKER_URL=REDIS_URL):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "database": {"ok": True, "vendor": connection.vendor},
        "broker": {"ok": True, "mode": "broker"},
    }
