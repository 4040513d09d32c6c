"""`manage.py import_prometheus --url URL --cluster C --start T0 --end T1 [--step S]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from probes.models import Cluster
from probes.services.prometheus import PrometheusSourceError, parse_time, prometheus_import


class Command(BaseCommand):
    help = "Pull dcgm-exporter and vLLM metrics of a time window from a Prometheus server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="e.g. http://prometheus:9090")
        parser.add_argument("--cluster", required=True, help="created if missing")
        parser.add_argument("--start", required=True, help="ISO 8601 or Unix seconds (UTC)")
        parser.add_argument("--end", required=True, help="ISO 8601 or Unix seconds (UTC)")
        parser.add_argument("--step", type=int, default=15, help="seconds (default 15)")
        parser.add_argument(
            "--header", action="append", default=[], metavar="NAME=VALUE",
            help="HTTP header for Prometheus, e.g. Authorization=Bearer...",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        headers = {}
        for item in options["header"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--header: expected NAME=VALUE, got {item!r}")
            headers[name] = value
        times = {}
        for key in ("start", "end"):
            try:
                times[key] = parse_time(options[key])
            except ValueError as exc:
                raise CommandError(f"--{key}: {exc}") from exc
        cluster, _created = Cluster.objects.get_or_create(name=options["cluster"])
        try:
            report = prometheus_import(
                url=options["url"], cluster=cluster, start=times["start"], end=times["end"],
                step_s=options["step"], headers=headers or None,
            )  # fmt: skip
        except (PrometheusSourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        counts = ", ".join(f"{value} {name}" for name, value in report.counts().items())
        self.stdout.write(f"imported {counts}")
