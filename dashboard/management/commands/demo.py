"""`manage.py demo`: prepare the local demo (admin login, demo fleet, one assessment)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

from advisor.services.assessments import schedules_ensure as assessment_schedules_ensure
from dashboard.demo_fleet import demo_fleet_ensure
from dashboard.formatting import usd
from dashboard.reports.services import schedules_ensure as report_schedules_ensure
from probes.roles import ADMIN, ensure_roles

DEMO_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the demo admin (password generated once, kept in var/) and print how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_roles()
        self.stdout.write(demo_fleet_ensure())
        # What beat does hourly for new clusters, done now so the pages show the schedules.
        assessment_schedules_ensure()
        report_schedules_ensure()
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
        return assessment_summary(done.latest("id"), "already there")
    # The last 7 days up to this whole hour: the demo's trace fills the last hour of it.
    assessment = assessment_create(cluster=CLUSTER, window="7d")
    assessment_run(assessment.pk)  # a no-op when the on-commit hook already ran it
    assessment.refresh_from_db()
    return assessment_summary(assessment, assessment.status)


def assessment_summary(assessment: Any, status: str) -> str:
    """The assessment's headline numbers, as the page shows them (all from the stored row)."""
    lines = [f"demo assessment: #{assessment.pk} {status}"]
    plan = assessment.plan or {}
    if plan:
        measured = (assessment.measured or {}).get("deployments") or {}
        assessed = [d["deployment"] for d in plan.get("deployments", []) if d.get("baseline")]
        measured_usd = sum(measured[name]["usd_per_month"] for name in assessed if name in measured)
        lines.append(
            f"  today: ${measured_usd:,.0f}/month measured, "
            f"${plan['fleet_baseline']['usd_per_month']:,.0f}/month simulated; plan: "
            f"${plan['fleet_plan']['usd_per_month']:,.0f}/month, saving "
            f"{usd(plan['savings_usd_per_month'])} ({plan['savings_fraction']:.1%})"
        )
        for item in plan.get("deployments", []):
            lines.append(f"  {item['deployment']}: {item['message']}")
    for gap in assessment.data_gaps or []:
        lines.append(f"  not assessed: {gap['message']}")
    if assessment.error:
        lines.append(f"  error: {assessment.error}")
    return "\n".join(lines)
