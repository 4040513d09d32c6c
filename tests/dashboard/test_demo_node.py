"""The demo's managed node: registration, the agent's files and command line (no vLLM here;
`test_rollout_flow.py` runs the agent for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dashboard.demo_node import agent_argv, demo_node_prepare
from probes.agent.controller_config import load_controller_settings
from probes.models import ModelDeployment, Node

pytestmark = pytest.mark.django_db


def test_it_registers_the_node_and_writes_a_controller_config_the_agent_loads(
    tmp_path: Path,
) -> None:
    demo = demo_node_prepare(cluster="demo", directory=tmp_path, vllm_python="/v/bin/python",
                             model="/m/tiny", port=8100)  # fmt: skip
    assert (demo.node.cluster.name, demo.node.hostname) == ("demo", "demo-vllm-cpu")
    assert (demo.deployment.served_name, demo.deployment.model_id) == ("tiny-llama", "/m/tiny")
    config = yaml.safe_load(demo.controller_config.read_text())
    assert config["local"]["base_args"] == ["--max-model-len", "1024", "--dtype", "bfloat16"]
    assert (config["local"]["port"], config["local"]["python"]) == (8100, "/v/bin/python")
    settings = load_controller_settings(demo.controller_config)
    assert settings.local is not None
    assert settings.interval_s == 2
    assert demo.token_file.stat().st_mode & 0o777 == 0o600
    assert agent_argv(demo, server="http://127.0.0.1:8000", python="py") == [
        "py", "-m", "probes.agent", "--server", "http://127.0.0.1:8000",
        "--token-file", str(tmp_path / "agent_token"), "--hostname", "demo-vllm-cpu",
        "--no-nvml", "--vllm", "http://127.0.0.1:8100", "--spool-dir", str(tmp_path / "spool"),
        "--controller-config", str(tmp_path / "controller.yaml"), "--push-interval", "5",
    ]  # fmt: skip


def test_running_it_again_issues_a_new_token_and_keeps_one_node(tmp_path: Path) -> None:
    first = demo_node_prepare(cluster="demo", directory=tmp_path, vllm_python="p", model="m",
                              port=8100)  # fmt: skip
    token = first.token_file.read_text()
    again = demo_node_prepare(cluster="demo", directory=tmp_path, vllm_python="p", model="m",
                              port=8100)  # fmt: skip
    assert again.token_file.read_text() != token
    assert Node.objects.count() == 1
    assert ModelDeployment.objects.count() == 1
