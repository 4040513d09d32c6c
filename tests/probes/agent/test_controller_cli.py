"""`python -m probes.agent --controller-config`: the real agent process supervises a (stand-in)
vLLM, pulls its desired config from the live server, applies it, reports, and stops vLLM
when it stops itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from probes.agent.desired import NodeConfig
from probes.agent.vllm_process import is_healthy
from probes.models import Node
from probes.node_config import node_desired_config_set
from probes.services import node_register
from tests.support.components import free_port

ROOT = Path(__file__).resolve().parents[3]
FAKE_PYTHON = Path(__file__).parent / "fake-python"


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


def _observed(node_id: int) -> dict[str, Any]:
    return Node.objects.get(id=node_id).observed_config or {}


def test_the_agent_process_applies_the_desired_config(
    live_server: Any, transactional_db: Any, tmp_path: Path
) -> None:
    node, token = node_register(cluster_name="prod", hostname="gpu-cli")
    (tmp_path / "token").write_text(token)
    port = free_port()
    config = tmp_path / "controller.yaml"
    config.write_text(yaml.safe_dump({
        "interval_s": 0.3, "state_file": str(tmp_path / "state.json"),
        "local": {"python": str(FAKE_PYTHON), "model": "/models/tiny", "served_name": "tiny",
                  "port": port, "base_args": ["--max-model-len", "1024"],
                  "env": {"FAKE_VLLM_PYTHON": sys.executable}, "log_dir": str(tmp_path / "vllm"),
                  "ready_timeout_s": 30},
    }))  # fmt: skip
    agent = subprocess.Popen(
        [sys.executable, "-m", "probes.agent", "--no-nvml", "--server", live_server.url,
         "--token-file", str(tmp_path / "token"), "--spool-dir", str(tmp_path / "spool"),
         "--hostname", "gpu-cli", "--controller-config", str(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _observed(node.id).get("state") == "serving", "the agent reports serving")
        assert is_healthy(url)
        node_desired_config_set(node_id=node.id, config=NodeConfig({"max_num_seqs": 8}))
        _wait(lambda: _observed(node.id).get("applied_generation") == 1, "generation 1 applies")
        observed = _observed(node.id)
        assert observed["config"] == {"engine_args": {"max_num_seqs": 8}}
        assert (observed["state"], observed["healthy"]) == ("serving", True)
        logs = sorted((tmp_path / "vllm").glob("*.log"))
        assert "--max-num-seqs', '8'" in logs[-1].read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, output
    assert not is_healthy(url)  # vLLM is the agent's child: it stopped with it
    state = (tmp_path / "state.json").read_text()
    assert '"applied_generation": 1' in state
