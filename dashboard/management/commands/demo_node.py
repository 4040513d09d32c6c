"""`manage.py demo_node`: run the demo's managed node (real vLLM CPU server + agent) until Ctrl-C.

Registers `demo-vllm-cpu` in the demo cluster with a new token, writes its agent's files under
var/demo-node/ and runs the agent, which starts vLLM on the tiny model and applies what a
rollout asks. The demo has no Celery worker (no broker: tasks run eagerly, once), so while
the agent runs this command also runs the rollout watchdog every `--step-s` seconds: that
is what advances a started rollout's steps and measures its ledger entry.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.demo_node import HOSTNAME, SERVED_NAME, agent_argv, demo_node_prepare
from dashboard.demo_notice import CLUSTER

ROOT = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = "Run the demo's managed vLLM CPU node and its agent (built by `make vllm-node`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", default="http://127.0.0.1:8000", help="the demo's URL")
        parser.add_argument("--port", type=int, default=8100, help="vLLM's port")
        parser.add_argument(
            "--vllm-python",
            default=os.environ.get("GCA_VLLM_PYTHON", str(ROOT / "var/cache/vllm-venv/bin/python")),
        )
        parser.add_argument(
            "--model", default=os.environ.get("GCA_TINY_MODEL", str(ROOT / "var/cache/tiny-llama"))
        )
        parser.add_argument("--step-s", type=float, default=5.0, help="watchdog period (eager)")

    def handle(self, *args: Any, **options: Any) -> None:
        python, model = options["vllm_python"], options["model"]
        if not Path(python).exists() or not (Path(model) / "config.json").exists():
            raise CommandError(f"{python} or {model}/config.json missing: run `make vllm-node`")
        demo = demo_node_prepare(
            cluster=CLUSTER,
            directory=Path(settings.VAR_DIR) / "demo-node",
            vllm_python=python,
            model=model,
            port=options["port"],
        )
        self.stdout.write(
            f"node {CLUSTER}/{HOSTNAME} (deployment {SERVED_NAME}) registered; its agent starts "
            f"vLLM on {demo.vllm_url} (1-2 minutes on a CPU).\n"
            f"Then on {options['server']}/rollouts/new/ choose node {CLUSTER}/{HOSTNAME}, a "
            'change (e.g. engine args {"max_num_seqs": 8}) and short bakes; an admin starts '
            "it. Ctrl-C stops the agent and vLLM."
        )
        agent = subprocess.Popen(agent_argv(demo, server=options["server"]))
        try:
            self._step_rollouts(agent, options["step_s"])
        except KeyboardInterrupt:
            pass
        finally:
            if agent.poll() is None:
                agent.terminate()  # the agent stops its vLLM child on SIGTERM
                agent.wait(timeout=120)

    def _step_rollouts(self, agent: subprocess.Popen[bytes], step_s: float) -> None:
        eager = settings.CELERY_TASK_ALWAYS_EAGER
        if not eager:
            self.stdout.write("a broker is configured: the Celery worker advances rollouts")
        from advisor.tasks.rollout import watchdog

        while agent.poll() is None:
            if eager:
                watchdog()
            time.sleep(step_s)
        raise CommandError(f"the agent exited with status {agent.returncode}")
