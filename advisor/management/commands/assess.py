"""`manage.py assess --cluster NAME [--window 7d] [--end ISO]`: start one and follow it.

With a broker configured the assessment runs on a worker's `sim` queue and this command
follows its progress until it ends (`--no-wait` returns at once); without one (the demo) it
runs in this process. `--rerun ID` runs a stored assessment's scenario snapshot again and
says whether the numbers are the same.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from advisor.models import Assessment, AssessmentStatus
from advisor.services.assessments import (
    AssessmentInputError,
    assessment_create,
    assessment_rerun,
)
from probes.services.prometheus import parse_time

POLL_S = 1.0


class Command(BaseCommand):
    help = "Assess a cluster over a window (default the last 7 days) and store the plan."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cluster", help="the cluster's name")
        parser.add_argument("--window", default="7d", help="e.g. 7d, 24h, 2w (1h..90d)")
        parser.add_argument(
            "--end", help="the window ends at this hour (ISO 8601, naive = UTC; default: now)"
        )
        parser.add_argument("--no-wait", action="store_true", help="queue it and return")
        parser.add_argument("--rerun", type=int, metavar="ID", help="re-run a stored snapshot")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rerun"] is not None:
            self._rerun(options["rerun"])
            return
        if not options["cluster"]:
            raise CommandError("--cluster: required (or --rerun ID)")
        end = None
        if options["end"]:
            try:
                end = parse_time(options["end"])
            except ValueError as exc:
                raise CommandError(f"--end: {exc}") from exc
        try:
            assessment = assessment_create(
                cluster=options["cluster"], window=options["window"], end=end
            )
        except AssessmentInputError as exc:
            raise CommandError(f"--{exc.field.replace('_', '-')}: {exc.message}") from exc
        self.stdout.write(
            f"assessment #{assessment.pk} of {assessment.cluster.name}: "
            f"{assessment.window_start:%Y-%m-%d %H:%M} .. {assessment.window_end:%Y-%m-%d %H:%M}"
        )
        if options["no_wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        last = ""
        while True:
            assessment.refresh_from_db()
            line = f"  {assessment.progress:4.0%} {assessment.progress_message}"
            if line != last:
                self.stdout.write(line)
                last = line
            if assessment.status in (AssessmentStatus.COMPLETED, AssessmentStatus.FAILED):
                break
            if time.monotonic() > deadline:
                raise CommandError(f"assessment #{assessment.pk} still {assessment.status}")
            time.sleep(POLL_S)
        if assessment.status == AssessmentStatus.FAILED:
            raise CommandError(f"assessment #{assessment.pk} failed: {assessment.error}")
        self.stdout.write(self.style.SUCCESS(_summary(assessment)))

    def _rerun(self, assessment_id: int) -> None:
        assessment = Assessment.objects.filter(pk=assessment_id).first()
        if assessment is None:
            raise CommandError(f"--rerun: no assessment #{assessment_id}")
        try:
            _outcome, differ = assessment_rerun(assessment=assessment)
        except AssessmentInputError as exc:
            raise CommandError(f"--rerun: {exc}") from exc
        if differ:
            raise CommandError(
                f"assessment #{assessment_id}: the re-run differs in {', '.join(differ)}"
            )
        self.stdout.write(
            f"assessment #{assessment_id} re-run from its snapshot "
            f"({assessment.scenario_digest[:12]}): the same numbers"
        )


def _summary(assessment: Assessment) -> str:
    fleet = assessment.measured.get("fleet", {})
    lines = [f"assessment #{assessment.pk} done in {assessment.timings.get('total_s', 0):.1f} s"]
    if fleet:
        util = fleet.get("util_mean_pct")
        lines.append(
            f"  measured: {fleet['gpu_count']} GPUs, utilization "
            f"{'n/a' if util is None else f'{util:.1f}%'}, "
            f"${fleet['usd_per_month']:,.0f}/month"
        )
    plan = assessment.plan or {}
    if "usd_per_month" in plan:
        lines.append(
            f"  plan: ${plan['usd_per_month']:,.0f}/month "
            f"(saves ${plan.get('savings_usd_per_month', 0):,.0f}/month)"
        )
    for gap in assessment.data_gaps:
        lines.append(f"  not assessed: {gap['message']}")
    return "\n".join(lines)
