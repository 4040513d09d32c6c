"""Suite-wide fixtures: named users per role, the real Celery worker, CI component rules."""

from __future__ import annotations

from collections.abc import Iterator
from subprocess import Popen
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from probes.agent.vllm_process import VllmProcess
from probes.roles import ADMIN, OPERATOR, VIEWER, ensure_roles
from tests.support.celery_worker import app_uses_broker, running_worker
from tests.support.components import IN_CI
from tests.support.vllm_node import running_vllm


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if IN_CI and "postgresql" not in engine:
        raise pytest.UsageError(
            "CI=true requires PostgreSQL: set DATABASE_URL=postgres://... (got " + engine + ")"
        )


def _user_with_role(username: str, role: str) -> User:
    ensure_roles()
    user = User.objects.create_user(username, f"{username}@example.org", "password")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db: Any) -> User:
    """An admin."""
    return _user_with_role("alice", ADMIN)


@pytest.fixture
def bob(db: Any) -> User:
    """An operator."""
    return _user_with_role("bob", OPERATOR)


@pytest.fixture
def carol(db: Any) -> User:
    """A viewer."""
    return _user_with_role("carol", VIEWER)


@pytest.fixture(scope="session")
def _celery_worker_process(django_db_setup: Any) -> Iterator[Popen[bytes]]:
    # One worker for the whole session: starting Celery costs seconds.
    with running_worker() as process:
        yield process


@pytest.fixture
def celery_worker(
    transactional_db: Any, _celery_worker_process: Popen[bytes]
) -> Iterator[Popen[bytes]]:
    """A real Celery worker on Redis sharing the (PostgreSQL) test database.

    Tests using it commit for real (transactional_db) so the worker sees their rows.
    """
    if _celery_worker_process.poll() is not None:
        pytest.fail("the session's celery worker has exited; see var/test-logs/celery-worker-*.log")
    with app_uses_broker():
        yield _celery_worker_process


@pytest.fixture(scope="session")
def vllm_node() -> Iterator[VllmProcess]:
    """One real vLLM CPU server shared by the whole session (starting one costs about a minute).

    Tests that need other engine args start their own with `running_vllm(...)`.
    """
    with running_vllm(name="session-vllm") as process:
        yield process
