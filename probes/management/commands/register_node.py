"""`manage.py register_node [--cluster C] HOSTNAME`: print a new agent token (shown once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from probes.services import NodeRegistrationError, node_register


class Command(BaseCommand):
    help = (
        "Register a GPU node and print its agent token on stdout (only the token, so "
        "`register_node gpu-1 > token` works). The token is stored hashed: keep it now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hostname")
        parser.add_argument("--cluster", default="default", help="created if missing")
        parser.add_argument(
            "--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
        )
        parser.add_argument(
            "--rotate", action="store_true", help="issue a new token for an existing node"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        labels: dict[str, str] = {}
        for item in options["label"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--label: expected KEY=VALUE, got {item!r}")
            labels[key] = value
        try:
            node, token = node_register(
                cluster_name=options["cluster"],
                hostname=options["hostname"],
                labels=labels,
                rotate=options["rotate"],
            )
        except NodeRegistrationError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"registered {node}; the token below is shown only once")
        self.stdout.write(token)
