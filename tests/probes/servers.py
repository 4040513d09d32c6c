"""Real processes for the probes integration tests: the Django server (gunicorn), the agent.

The server runs against the test database (PostgreSQL), so tests using it must commit for
real (`transactional_db`). It can be killed and started again on the same port to stage
an outage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.db import connection

from tests.support.components import missing

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "test-logs"
READY_TIMEOUT_S = 60.0


def test_database_url() -> str:
    if connection.vendor != "postgresql":
        missing("PostgreSQL", "a server process needs a shared database; set DATABASE_URL")
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class DjangoServer:
    """gunicorn serving config.wsgi on 127.0.0.1:`port` against the test database."""

    def __init__(self, port: int, workers: int = 2) -> None:
        self.port = port
        self.workers = workers
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = LOG_DIR / f"probes-server-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "tests-only-not-secret-" + "x" * 40,
            "DEBUG": "False",
            "SECURE_SSL": "False",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": "",
            "LOG_LEVEL": "WARNING",
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi",
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                 "--timeout", "60"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {READY_TIMEOUT_S} s")

    def kill(self) -> None:
        """Stop abruptly (SIGKILL to the whole process group), as a crash or power cut would."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class AgentProcess:
    """`python -m probes.agent` as a subprocess; `stop()` sends SIGTERM and waits."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "probes.agent", *self.args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int:
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
