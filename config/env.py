"""Typed readers for settings that come from the environment.

Each reader fails loudly with a `ConfigError` whose message names the variable, so a bad
deployment stops at start with one line instead of misbehaving later. A secret may also come
from a file named by `<NAME>_FILE` (Docker and Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url


class ConfigError(ValueError):
    """A setting read from the environment is missing or malformed."""


def _raw(name: str) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name!r}: {exc.strerror}") from exc
    return os.environ.get(name)


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """Accept only True/False (any case) or 1/0, never guess."""
    value = _raw(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ConfigError(f"{name}: expected True or False, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from exc
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None or value.strip() == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


_DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "sqlite")


def env_database(name: str, default: str) -> dict[str, Any]:
    """Parse a database URL; only PostgreSQL and SQLite are supported."""
    value = _raw(name) or default
    scheme = urlsplit(value).scheme
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(
            f"{name}: expected postgres://user@host:port/db or sqlite:///path, got {value!r}"
        )
    try:
        config = dict(dj_database_url.parse(value, conn_max_age=60))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    if scheme != "sqlite" and not config.get("NAME"):
        raise ConfigError(f"{name}: the URL names no database, got {value!r}")
    if scheme == "sqlite":
        # The demo's web workers and its Celery worker share one file: readers must not block
        # the writer (WAL), and a writer waits for the lock instead of failing at once.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    return config


_BROKER_SCHEMES = ("redis", "rediss", "memory")


def env_broker_url(name: str) -> str:
    """A Redis URL, or empty to run tasks eagerly in-process."""
    value = env_str(name).strip()
    if value and urlsplit(value).scheme not in _BROKER_SCHEMES:
        raise ConfigError(f"{name}: expected redis://host:port/db, got {value!r}")
    return value


def env_cache(name: str) -> dict[str, Any]:
    """The default cache: Redis at a redis:// URL, or this process's memory when empty."""
    value = env_str(name).strip()
    if not value:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if urlsplit(value).scheme not in ("redis", "rediss"):
        raise ConfigError(f"{name}: expected redis://host:port/db or empty, got {value!r}")
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": value}
