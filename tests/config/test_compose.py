"""docker-compose.yml validates against the Compose schema (no Docker engine runs here)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.components import missing

ROOT = Path(__file__).resolve().parents[2]


def _example_env() -> dict[str, str]:
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value.split("#")[0].strip()
    return env


@pytest.mark.integration
def test_it_validates_with_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        missing("docker-compose", "apt-get install -y docker-compose")
    result = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **_example_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_it_defines_the_server_stack_and_a_gpu_node_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "prometheus"} <= set(services)
    assert {name for name, spec in services.items() if "gpu" in spec.get("profiles", [])} == {
        "vllm",
        "agent",
        "dcgm-exporter",
    }
    assert "gunicorn" in services["web"]["command"]
    assert "default,sim,bench,rollout" in services["worker"]["command"]


def test_it_lists_every_variable_compose_passes_in_env_example() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    example = _example_env()
    used = set(re.findall(r"\$\{([A-Z_]+)", compose_text))
    assert used <= set(example), used - set(example)
