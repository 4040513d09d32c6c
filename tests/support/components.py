"""Real external components for integration tests.

In CI (`CI=true`) a missing component FAILS the test; on a developer's machine it skips.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def missing(component: str, reason: str) -> NoReturn:
    """Fail (CI) or skip (elsewhere) because a real component is not available."""
    message = f"{component} is not available: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
