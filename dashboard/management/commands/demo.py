"""`manage.py demo`: prepare the local demo (admin login, demo fleet; later: an assessment)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

from dashboard.demo_fleet import demo_fleet_ensure
from probes.roles import ADMIN, ensure_roles

DEMO_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the demo admin (password generated once, kept in var/) and print how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_roles()
        self.stdout.write(demo_fleet_ensure())
        password = self._admin_password()
        self.stdout.write(
            self.style.SUCCESS(
                f"\nGPU Cost Advisor demo: http://127.0.0.1:8000/\n"
                f"  log in as {DEMO_USERNAME} / {password}\n"
            )
        )

    def _admin_password(self) -> str:
        credentials = Path(settings.VAR_DIR) / "demo-admin-password"
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is not None and credentials.exists():
            return credentials.read_text().strip()
        password = secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_superuser(DEMO_USERNAME, "admin@localhost", password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=ADMIN))
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.touch(mode=0o600)
        credentials.write_text(password + "\n")
        return password
