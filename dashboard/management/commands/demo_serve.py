"""`manage.py demo_serve`: serve the demo, with a Celery worker and beat when Redis answers.

Started by `make demo` after `manage.py demo`. With Redis at `--broker` (default
`DEMO_BROKER_URL` or redis://127.0.0.1:6379/5) the worker and gunicorn get
CELERY_BROKER_URL, so schedules fire and long work runs in the background; without it the
web process runs tasks inline and every page says so. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from dashboard.demo_serve import DEFAULT_BROKER_URL, broker_answers, demo_processes


class Command(BaseCommand):
    help = "Serve the demo (gunicorn), with a Celery worker and beat when Redis answers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--broker", default=os.environ.get("DEMO_BROKER_URL", DEFAULT_BROKER_URL)
        )
        parser.add_argument("--bind", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        broker = options["broker"] if broker_answers(options["broker"]) else None
        var_dir = str(Path(settings.VAR_DIR))
        env = dict(os.environ)
        if broker:
            env["CELERY_BROKER_URL"] = broker
            self.stdout.write(
                f"background work: a Celery worker with beat on {broker} (log: "
                f"{var_dir}/demo-worker.log); schedules fire, reports and what-ifs run queued"
            )
        else:
            env.pop("CELERY_BROKER_URL", None)
            self.stdout.write(
                f"background work: none (no Redis answered at {options['broker']}): tasks run "
                "inside the web process and weekly schedules do not fire; the pages say so"
            )
        children = [
            subprocess.Popen(process.argv, env=env)
            for process in demo_processes(broker_url=broker, bind=options["bind"], var_dir=var_dir)
        ]
        stop = False

        def request_stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stop and all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
