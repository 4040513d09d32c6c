import subprocess
import sys
from pathlib import Path

import pytest

from config.env import (
    ConfigError,
    env_bool,
    env_broker_url,
    env_cache,
    env_database,
    env_int,
    env_str,
)

ROOT = Path(__file__).resolve().parents[2]


def test_it_parses_postgres_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gca")
    config = env_database("DATABASE_URL", "sqlite:///x")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "127.0.0.1",
        5432,
        "gca",
        "postgres",
    )


def test_it_rejects_a_nonsense_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "nonsense")
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: expected postgres://"):
        env_database("DATABASE_URL", "sqlite:///x")


def test_it_rejects_a_postgres_url_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://127.0.0.1:5432")
    with pytest.raises(ConfigError, match="names no database"):
        env_database("DATABASE_URL", "sqlite:///x")


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), ("1", True)])
def test_it_reads_booleans(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", not expected) is expected


def test_it_rejects_ambiguous_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "yes")
    with pytest.raises(ConfigError, match=r"^DEBUG: expected True or False, got 'yes'$"):
        env_bool("DEBUG", False)


def test_it_rejects_integers_below_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_PORT", "0")
    with pytest.raises(ConfigError, match=r"^EMAIL_PORT: must be >= 1, got 0$"):
        env_int("EMAIL_PORT", 587, minimum=1)
    monkeypatch.setenv("EMAIL_PORT", "smtp")
    with pytest.raises(ConfigError, match=r"^EMAIL_PORT: expected an integer"):
        env_int("EMAIL_PORT", 587)


def test_it_rejects_a_non_redis_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest@localhost//")
    with pytest.raises(ConfigError, match=r"^CELERY_BROKER_URL: expected redis://"):
        env_broker_url("CELERY_BROKER_URL")


def test_it_reads_secrets_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    assert env_str("SECRET_KEY") == "s3cret"


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT / "var")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_stops_at_start_with_one_line_naming_the_variable() -> None:
    result = _manage({"DEBUG": "True", "DATABASE_URL": "nonsense"}, "check")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL: expected postgres://user@host:port/db or "
        "sqlite:///path, got 'nonsense'"
    ]


def test_it_requires_a_secret_key_when_debug_is_off() -> None:
    result = _manage({"DEBUG": "False"}, "check")
    assert result.returncode == 1
    assert result.stderr.strip() == "configuration error: SECRET_KEY: required when DEBUG is False"


def test_it_caches_in_process_memory_without_a_cache_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHE_URL", raising=False)
    assert env_cache("CACHE_URL") == {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def test_it_caches_in_redis_with_a_cache_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_URL", "redis://redis:6379/1")
    assert env_cache("CACHE_URL") == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://redis:6379/1",
    }


def test_it_rejects_a_non_redis_cache_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_URL", "memcached://127.0.0.1:11211")
    with pytest.raises(ConfigError, match=r"^CACHE_URL: expected redis://host:port/db or empty"):
        env_cache("CACHE_URL")


def test_it_gives_sqlite_wal_and_a_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # the demo's web workers and its Celery worker share the file (issue 16 item 9)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = env_database("DATABASE_URL", "sqlite:///x")
    assert config["OPTIONS"] == {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
