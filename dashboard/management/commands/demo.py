"""`manage.py demo`: prepare the local demo (admin login, demo fleet, one assessment)."""

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
        self.stdout.write(_demo_assessment())
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


def _demo_assessment() -> str:
    """Assess the demo cluster once (in this process: the demo has no broker)."""
    from advisor.models import Assessment, AssessmentStatus
    from advisor.services.assessments import assessment_create
    from advisor.tasks.sim import assessment_run
    from dashboard.demo_fleet import CLUSTER

    done = Assessment.objects.filter(cluster__name=CLUSTER, status=AssessmentStatus.COMPLETED)
    if done.exists():
        return f"demo assessment: #{done.latest('id').pk} already there"
    # The last 7 days up to this whole hour: most of the trace imported just now is inside.
    assessment = assessment_create(cluster=CLUSTER, window="7d")
    assessment_run(assessment.pk)  # a no-op when the on-commit hook already ran it
    assessment.refresh_from_db()
    gaps = "; ".join(gap["message"] for gap in assessment.data_gaps)
    return f"demo assessment: #{assessment.pk} {assessment.status}" + (
        f" (not assessed: {gaps})" if gaps else ""
    )
