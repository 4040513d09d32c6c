"""`manage.py import_trace FILE --format F --deployment CLUSTER/NAME [--dry-run]`.

`--shift-start-at TIME` or `--shift-end-now` moves the trace in time (e.g. the Azure 2023
traces into the windows assessments read); the command warns when the trace, shifted or not,
lies outside every assessment window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from probes.models import Cluster, ModelDeployment, TraceFormat
from probes.services import trace_import
from probes.services.prometheus import parse_time


class Command(BaseCommand):
    help = (
        "Import a request trace (all or nothing; errors name the row and column). Relative "
        "traces (burstgpt, mooncake, csv arrival_s) start at --start (default: this UTC hour)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", required=True, choices=TraceFormat.values)
        parser.add_argument(
            "--deployment", required=True, metavar="CLUSTER/SERVED_NAME",
            help="the deployment the requests belong to",
        )  # fmt: skip
        parser.add_argument(
            "--create", action="store_true", help="create the cluster and deployment if missing"
        )
        parser.add_argument("--model-id", help="with --create: the model's HF id or path")
        parser.add_argument("--start", help="ISO 8601 or Unix seconds (UTC)")
        parser.add_argument(
            "--shift-start-at", metavar="TIME",
            help="shift the trace so its first request is at TIME (ISO 8601 or Unix seconds, UTC)",
        )  # fmt: skip
        parser.add_argument(
            "--shift-end-now", action="store_true",
            help="shift the trace so its last request is just before the current UTC hour "
            "(the end of the windows assessments read)",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="validate, store nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if options["shift_start_at"] and options["shift_end_now"]:
            raise CommandError("--shift-start-at, --shift-end-now: choose one shift, not both")
        shift_start_at = None
        if options["shift_start_at"]:
            try:
                shift_start_at = parse_time(options["shift_start_at"])
            except (ValueError, OverflowError, OSError):
                raise CommandError(
                    "--shift-start-at: expected ISO 8601 (2026-01-05T14:00, UTC) or Unix "
                    f"seconds, got {options['shift_start_at']!r}"
                ) from None
        if not path.is_file():
            raise CommandError(f"FILE: {path} does not exist or is not a file")
        cluster_name, sep, served_name = options["deployment"].partition("/")
        if not sep or not cluster_name or not served_name:
            raise CommandError("--deployment: expected CLUSTER/SERVED_NAME")
        deployment = ModelDeployment.objects.filter(
            cluster__name=cluster_name, served_name=served_name
        ).first()
        if deployment is None:
            if not options["create"]:
                raise CommandError(
                    f"--deployment: {cluster_name}/{served_name} does not exist (add --create)"
                )
            cluster, _created = Cluster.objects.get_or_create(name=cluster_name)
            deployment = ModelDeployment.objects.create(
                cluster=cluster, served_name=served_name,
                model_id=options["model_id"] or served_name,
            )  # fmt: skip
        start = None
        if options["start"]:
            try:
                start = parse_time(options["start"])
            except ValueError as exc:
                raise CommandError(f"--start: {exc}") from exc
        report = trace_import(
            deployment=deployment, file=path, format=options["format"],
            dry_run=options["dry_run"], start=start, shift_start_at=shift_start_at,
            shift_end_now=options["shift_end_now"],
        )  # fmt: skip
        if not report.ok:
            for error in report.errors:
                self.stderr.write(f"{path.name}: {error}")
            raise CommandError(report.summary())
        self.stdout.write(report.summary())
        if report.warning:
            self.stderr.write(f"warning: {report.warning}")
