"""The local controller with real processes: a stand-in vLLM server that starts in a second
(`fake_vllm_server.py`), so restore paths run in seconds; the real vLLM CPU nodes run the same
controller in tests/advisor/rollouts/test_reliability.py."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from probes.agent.controller import ApplyError
from probes.agent.controller_local import LocalController
from probes.agent.desired import NodeConfig
from probes.agent.vllm_process import VllmLaunch, is_healthy
from tests.support.components import free_port

FAKE_PYTHON = Path(__file__).parent / "fake-python"
EIGHT = NodeConfig({"max_num_seqs": 8})


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[LocalController]:
    launch = VllmLaunch(python=str(FAKE_PYTHON), model="/models/tiny", served_name="tiny",
                        port=free_port(), engine_args=("--max-model-len", "1024"),
                        env={"FAKE_VLLM_PYTHON": sys.executable})  # fmt: skip
    with httpx.Client(timeout=10) as client:
        local = LocalController(launch, log_dir=tmp_path, client=client, ready_timeout_s=30)
        local.start(None)
        try:
            yield local
        finally:
            local.close()


def _argv(local: LocalController) -> str:
    assert local.pid is not None
    return Path(f"/proc/{local.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_it_applies_a_config_that_starts_and_answers(controller: LocalController) -> None:
    first = controller.pid
    controller.apply(EIGHT)
    assert controller.pid != first
    assert is_healthy(controller.base_url)
    assert controller.running_config() == EIGHT
    assert "--max-model-len 1024 --max-num-seqs 8" in _argv(controller)


def test_a_refused_config_restores_the_previous_args_and_says_why(
    controller: LocalController,
) -> None:
    controller.apply(EIGHT)
    with pytest.raises(ApplyError) as error:
        controller.apply(NodeConfig({"refuse": True}))
    assert error.value.restored is True
    assert error.value.reason == (
        "vLLM did not start: Value error, --refuse asked this server not to start "
        "[type=value_error]"
    )
    assert controller.running_config() == EIGHT
    assert is_healthy(controller.base_url)
    assert "--max-num-seqs 8" in _argv(controller)
    assert "--refuse" not in _argv(controller)


def test_a_healthy_server_that_cannot_complete_is_restored(controller: LocalController) -> None:
    with pytest.raises(ApplyError) as error:
        controller.apply(NodeConfig({"broken_engine": True}))
    assert error.value.restored is True
    assert error.value.reason.startswith("smoke request answered 500")
    assert controller.running_config() == NodeConfig()
    assert "--broken-engine" not in _argv(controller)


def test_an_exit_is_counted_once_and_restart_brings_the_config_back(
    controller: LocalController,
) -> None:
    controller.apply(EIGHT)
    pid = controller.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while controller.check().running and time.monotonic() < deadline:
        time.sleep(0.1)
    health = controller.check()
    assert (health.running, health.healthy) == (False, False)
    assert controller.restarts == 1
    assert controller.last_exit is not None
    assert controller.last_exit["code"] == -signal.SIGKILL
    controller.restart()
    assert controller.check().healthy
    assert controller.restarts == 1  # a restart we made is not an exit
    assert "--max-num-seqs 8" in _argv(controller)


def test_replicas_are_refused_without_touching_the_process(controller: LocalController) -> None:
    pid = controller.pid
    with pytest.raises(ApplyError, match="replicas and autoscaling need the kubernetes controller"):
        controller.apply(NodeConfig({"max_num_seqs": 8}, replicas=2))
    assert controller.pid == pid
    assert is_healthy(controller.base_url)


def test_an_absent_checkpoint_is_refused_before_anything_stops(
    controller: LocalController, tmp_path: Path
) -> None:
    pid = controller.pid
    with pytest.raises(ApplyError) as error:
        controller.apply(NodeConfig({}, model=str(tmp_path / "no-such-awq")))
    assert str(error.value) == (
        f"checkpoint '{tmp_path / 'no-such-awq'}' is not on this node: no config.json in "
        f"'{tmp_path / 'no-such-awq'}' (not a directory holding one); nothing was stopped"
    )
    assert error.value.restored is True
    assert controller.pid == pid
    assert is_healthy(controller.base_url)


def test_a_present_checkpoint_is_served_in_place_of_the_base_model(
    controller: LocalController, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "tiny-awq"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    controller.apply(NodeConfig({}, model=str(checkpoint)))
    assert f"--model {checkpoint} --served-model-name tiny" in _argv(controller)
