"""`python -m probes.agent`: one-round printing, flag errors, and no Django in the process."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probes.agent", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_it_prints_one_round_as_json_and_says_why_there_are_no_gpus() -> None:
    done = _agent("--once", "--print", "--hostname", "node-9")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["gpu_samples"] == []
    assert printed["host"]["hostname"] == "node-9"
    assert printed["host"]["nvml"].startswith("unavailable")
    assert any("NVML unavailable" in note for note in printed["notes"])


def test_it_rejects_a_bad_flag_naming_it(tmp_path: Path) -> None:
    done = _agent("--once", "--sample-interval", "0")
    assert done.returncode == 2
    assert "sample_interval_s: must be between" in done.stderr
    config = tmp_path / "agent.yaml"
    config.write_text("vllm: [{url: 'localhost:8000'}]\n")
    done = _agent("--once", "--config", str(config))
    assert done.returncode == 2
    assert "vllm[0].url: expected an http(s):// URL" in done.stderr


def test_it_needs_a_server_and_token_to_run() -> None:
    done = _agent("--no-nvml")
    assert done.returncode == 2
    assert "--server and --token-file are required" in done.stderr


def test_the_agent_loads_no_django() -> None:
    code = (
        "import sys, probes.agent.cli, probes.agent.runner;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'celery', 'advisor', 'dashboard', 'config')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
