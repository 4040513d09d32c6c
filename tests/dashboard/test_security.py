"""Production settings pass `check --deploy`; responses carry the security headers."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_reports_nothing_with_production_settings(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG"))},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "False",
        "SECURE_SSL": "True",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "advisor.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://advisor.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_would_report_a_short_secret_key(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "False",
        "SECURE_SSL": "True",
        "SECRET_KEY": "short",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


@pytest.mark.django_db
def test_pages_carry_a_csp_without_inline_scripts(client: Client, carol) -> None:
    client.force_login(carol)
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cache-Control"] == "private, no-store"
    # Every script the page loads is a file from this site: no inline code, no CDN.
    html = response.content.decode()
    scripts = [part.split(">", 1)[0] for part in html.split("<script")[1:]]
    assert scripts, "the fleet page loads scripts"
    for tag in scripts:
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    assert "cdn" not in html.lower()


@pytest.mark.django_db
def test_the_login_page_and_healthz_need_no_login(client: Client) -> None:
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/healthz").status_code == 200
    response = client.get("/traces/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/traces/"


_IS_SECURE = """
import django
django.setup()
from django.conf import settings
from django.test import RequestFactory
request = RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https")
print(settings.SECURE_PROXY_SSL_HEADER, request.is_secure())
"""


def _is_secure_behind_proxy(tmp_path: Path, trust: str | None) -> str:
    """What the production settings make of a plain-HTTP request saying X-Forwarded-Proto: https."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'proxy.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
    }
    if trust is not None:
        env["TRUST_X_FORWARDED_PROTO"] = trust
    result = subprocess.run(
        [sys.executable, "-c", _IS_SECURE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_it_ignores_x_forwarded_proto_by_default(tmp_path: Path) -> None:
    # Without a proxy that overwrites it, any client could send the header and pass for HTTPS.
    assert _is_secure_behind_proxy(tmp_path, None) == "None False"
    assert _is_secure_behind_proxy(tmp_path, "False") == "None False"


def test_it_trusts_x_forwarded_proto_when_told_a_proxy_sets_it(tmp_path: Path) -> None:
    assert _is_secure_behind_proxy(tmp_path, "True") == "('HTTP_X_FORWARDED_PROTO', 'https') True"
