"""What several benchmarks share: the database each runs on, and waiting for a process.

Two ways to get a database of one's own:
- `throwaway_database(name)` for benchmarks whose server is a real process (gunicorn):
  a PostgreSQL database created, migrated by `manage.py migrate` and dropped, with
  `server_env` the environment such a process runs in and `register_node` a node's token.
- `django_test_database(...)` for benchmarks that call Django in this process: Django's
  test database `<DATABASE_URL's name>_<suffix>`, created and migrated through Django.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from tests.support.components import port_open

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/gca"
_PG = "postgresql://postgres@127.0.0.1:5432"


# -- a server process on a throwaway database -------------------------------------------------


@contextmanager
def throwaway_database(name: str) -> Iterator[str]:
    """The URL of PostgreSQL database `name`, dropped if there, created and migrated; dropped
    again on exit."""
    with psycopg.connect(_PG + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        subprocess.run([str(BIN / "python"), "manage.py", "migrate", "-v0"], cwd=ROOT,
                       env=server_env(url), check=True)  # fmt: skip
        yield url
    finally:
        with psycopg.connect(_PG + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str) -> dict[str, str]:
    """The environment of `manage.py` and gunicorn on `database_url`: production settings
    (no debug, no broker)."""
    return {
        **os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "False",
        "SECURE_SSL": "False", "SECRET_KEY": "bench-only-" + "x" * 40,
        "DATABASE_URL": database_url, "CELERY_BROKER_URL": "", "LOG_LEVEL": "WARNING",
    }  # fmt: skip


def register_node(database_url: str, hostname: str) -> str:
    """The agent token of node `hostname`, registered in cluster `bench`."""
    done = subprocess.run(
        [str(BIN / "python"), "manage.py", "register_node", "--cluster", "bench", hostname],
        cwd=ROOT, env=server_env(database_url), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


def wait_ready(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float = 120.0
) -> None:
    """Poll `ready()` (an HTTP error counts as not yet) until true; raise if `process` exits
    first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{process.args!r} not ready in {timeout_s} s")


# -- Django in this process on a test database of its own ------------------------------------


def django_test_database(*, bench: str, suffix: str, keepdb: bool) -> None:
    """Set Django up on its test database `<DATABASE_URL's name>_<suffix>`, created and
    migrated if missing.

    `keepdb=True` keeps the database and its rows between runs; `False` drops it and
    migrates afresh. Without a postgres DATABASE_URL the local PostgreSQL is used if one
    answers; `bench` (the module's name) is named in the error when there is none.
    """
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") and port_open("127.0.0.1", 5432):
        # `make bench` outside CI has no DATABASE_URL: use the local PostgreSQL.
        os.environ["DATABASE_URL"] = DEFAULT_POSTGRES
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    if connection.vendor != "postgresql":
        raise RuntimeError(
            f"{bench} needs PostgreSQL: set DATABASE_URL=postgres://... (got {connection.vendor})"
        )
    name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"{name}_{suffix}"
    setup_test_environment()
    # serialize=False: the default would read every row into a string (4M rollups in
    # bench_dashboard's database).
    connection.creation.create_test_db(
        verbosity=0, autoclobber=True, keepdb=keepdb, serialize=False
    )
