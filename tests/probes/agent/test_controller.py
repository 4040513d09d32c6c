"""The controller task's decisions (apply, adopt, never retry a failure, restart after an exit,
probe, report), the node-config protocol, gate metrics from real /metrics text, and config."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.agent.config import ConfigError
from probes.agent.controller import ApplyError, ControllerTask, Health, gate_metrics
from probes.agent.controller_config import build_controller, controller_settings
from probes.agent.controller_local import LocalController, launch_for, reason_from_log
from probes.agent.desired import Desired, NodeConfig, Observed, ProtocolError
from probes.agent.vllm_metrics import Histogram
from probes.agent.vllm_process import VllmLaunch
from tests.probes.agent.stub_http import serving, text

DATA = Path(__file__).parent / "data"
BIG = NodeConfig({"max_num_seqs": 512})


class FakeController:
    """Records what the task asks; `fail` makes the next apply fail (previous restored)."""

    kind = "local"
    served_name = "tiny-llama"

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self.config: NodeConfig | None = None
        self.applied: list[NodeConfig] = []
        self.started: list[NodeConfig | None] = []
        self.running = True
        self.healthy = True
        self.fail: str | None = None
        self.restarts = 0
        self.last_exit: Mapping[str, Any] | None = None
        self.restart_calls = 0
        self.release = threading.Event()
        self.release.set()

    def start(self, config: NodeConfig | None) -> None:
        self.started.append(config)
        self.config = config

    def apply(self, config: NodeConfig) -> None:
        self.release.wait(5)
        self.applied.append(config)
        if self.fail:
            raise ApplyError(self.fail, restored=True)
        self.config = config

    def running_config(self) -> NodeConfig:
        return self.config or NodeConfig()

    def check(self) -> Health:
        return Health(self.running, self.running and self.healthy, "" if self.running else "exited")

    def restart(self) -> None:
        self.restart_calls += 1
        self.running = True

    def close(self) -> None:
        pass


class FakeSource:
    def __init__(self) -> None:
        self.desired = Desired()
        self.reports: list[Observed] = []
        self.down = False

    def fetch(self) -> Desired:
        if self.down:
            raise httpx.ConnectError("server unreachable")
        return self.desired

    def report(self, observed: Observed) -> None:
        # Round-trip through JSON: what the server would parse.
        self.reports.append(Observed.from_json(json.loads(json.dumps(observed.to_json()))))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _task(controller: FakeController, source: FakeSource, **kwargs: Any) -> ControllerTask:
    return ControllerTask(controller, source, client=httpx.Client(), **kwargs)


def _tick(task: ControllerTask, now: float = 0.0) -> Observed:
    task.tick(now)
    assert task.wait_idle(5)
    return task.observed()


def test_it_applies_a_newer_generation_and_reports_it_serving() -> None:
    controller, source = FakeController(), FakeSource()
    task = _task(controller, source)
    source.desired = Desired(generation=3, config=BIG)
    report = _tick(task)
    assert controller.applied == [BIG]
    assert (report.applied_generation, report.state, report.healthy) == (3, "serving", True)
    assert report.config == BIG
    assert [r.state for r in source.reports][:1] == ["applying"]  # said so before starting
    _tick(task)
    assert controller.applied == [BIG]  # applied once


def test_it_reports_a_failed_generation_with_why_and_never_retries_it() -> None:
    controller, source = FakeController(), FakeSource()
    controller.fail = "vLLM did not start: max_model_len too large"
    task = _task(controller, source)
    source.desired = Desired(generation=2, config=BIG)
    report = _tick(task)
    assert report.last_failure is not None
    assert report.last_failure.generation == 2
    assert report.last_failure.error == "vLLM did not start: max_model_len too large"
    assert report.last_failure.restored is True
    assert (report.applied_generation, report.state) == (0, "serving")
    _tick(task)
    _tick(task)
    assert len(controller.applied) == 1
    # A rollback to what already runs is adopted: no restart.
    source.desired = Desired(generation=3, config=NodeConfig())
    report = _tick(task)
    assert len(controller.applied) == 1
    assert report.applied_generation == 3


def test_it_restarts_an_exited_process_only_after_the_delay() -> None:
    clock = Clock()
    controller, source = FakeController(), FakeSource()
    task = _task(controller, source, restart_delay_s=5.0, clock=clock)
    controller.running = False
    report = _tick(task)
    assert report.state == "down"
    assert controller.restart_calls == 0  # the server hears about the exit first
    clock.now += 4
    _tick(task)
    assert controller.restart_calls == 0
    clock.now += 2
    report = _tick(task)
    assert controller.restart_calls == 1
    assert report.state == "serving"


def test_it_reports_unhealthy_only_after_three_failed_checks_in_a_row() -> None:
    controller, source = FakeController(), FakeSource()
    task = _task(controller, source)
    assert _tick(task).state == "serving"
    controller.healthy = False
    assert [_tick(task).state for _ in range(3)] == ["serving", "serving", "unhealthy"]
    controller.healthy = True
    assert _tick(task).state == "serving"


def test_a_new_desired_config_wins_over_restarting_the_exited_one() -> None:
    controller, source = FakeController(), FakeSource()
    task = _task(controller, source, restart_delay_s=0.0)
    controller.running = False
    source.desired = Desired(generation=5, config=NodeConfig({"max_num_seqs": 8}))
    _tick(task)
    assert controller.restart_calls == 0
    assert controller.applied == [NodeConfig({"max_num_seqs": 8})]


def test_it_keeps_supervising_and_reporting_when_the_server_is_unreachable() -> None:
    controller, source = FakeController(), FakeSource()
    source.down = True
    task = _task(controller, source)
    report = _tick(task)
    assert report.state == "serving"
    assert len(source.reports) == 1


def test_it_remembers_what_it_served_across_agent_restarts(tmp_path: Path) -> None:
    state = tmp_path / "controller.json"
    controller, source = FakeController(), FakeSource()
    source.desired = Desired(generation=4, config=BIG)
    _tick(_task(controller, source, state_path=state))
    again = FakeController()
    task = _task(again, FakeSource(), state_path=state)
    task.start()
    assert task.wait_idle(5)
    assert again.started == [BIG]
    assert task.applied_generation == 4


def test_an_unreadable_state_file_falls_back_to_the_base_config(tmp_path: Path) -> None:
    state = tmp_path / "controller.json"
    state.write_text("{not json")
    task = _task(FakeController(), FakeSource(), state_path=state)
    assert task.applied_generation == 0


def _metrics_routes(completions: list[int]) -> dict[tuple[str, str], Any]:
    metrics = (DATA / "vllm-0.32-after-5-requests.txt").read_text()

    def complete(request: BaseHTTPRequestHandler) -> None:
        completions.append(1)
        length = int(request.headers.get("Content-Length", 0))
        body = json.loads(request.rfile.read(length))
        assert body["model"] == "tiny-llama"
        text(json.dumps({"choices": [{"text": "hi"}]}), content_type="application/json")(request)

    return {("GET", "/metrics"): text(metrics), ("POST", "/v1/completions"): complete}


def test_it_probes_during_the_window_and_reports_live_counters() -> None:
    completions: list[int] = []
    with serving(_metrics_routes(completions)) as url:
        controller, source = FakeController(base_url=url), FakeSource()
        task = _task(controller, source)
        source.desired = Desired(generation=1, config=BIG, probe_interval_s=1.0, probe_for_s=60)
        _tick(task, now=2000.0)  # applies (no probe while applying)
        _tick(task, now=2000.5)  # probes
        _tick(task, now=2001.0)  # not due yet
        report = _tick(task, now=2001.6)  # probes
    assert len(completions) == 2
    assert report.probes == {"ok": 2, "failed": 0, "last_error": None}
    assert report.metrics is not None
    assert report.metrics["requests_total"] == 5.0
    assert report.metrics["http_total"] == 5.0


def test_gate_metrics_reads_vllms_own_counters_and_histograms() -> None:
    body = (DATA / "vllm-0.32-after-5-requests.txt").read_text()
    got = gate_metrics(body, "tiny-llama", 12.5)
    assert got["at"] == 12.5
    assert (got["requests_total"], got["requests_error"]) == (5.0, 0.0)
    assert (got["http_total"], got["http_5xx"]) == (5.0, 0.0)
    assert Histogram.from_json(got["ttft"]).count == 5.0
    assert Histogram.from_json(got["tpot"]).count == 5.0  # per-request TPOT, not per token
    idle = gate_metrics((DATA / "vllm-0.32-idle.txt").read_text(), "tiny-llama", 0.0)
    assert idle["requests_total"] == 0.0


# -- protocol --------------------------------------------------------------------------------


def test_desired_round_trips_and_rejects_bad_engine_args() -> None:
    desired = Desired(7, NodeConfig({"max_num_seqs": 8, "enable_chunked_prefill": False},
                                    model="/models/q", replicas=2), 3, 1.0, 30.0)  # fmt: skip
    assert Desired.from_json(json.loads(json.dumps(desired.to_json()))) == desired
    assert Desired.from_json({}) == Desired()
    for args, field in (
        ({"Max-Num-Seqs": 8}, "config.engine_args.Max-Num-Seqs"),
        ({"port": 9000}, "config.engine_args.port"),
        ({"max_num_seqs": [1, 2]}, "config.engine_args.max_num_seqs"),
        ({"max_num_seqs": float("nan")}, "config.engine_args.max_num_seqs"),
    ):
        with pytest.raises(ProtocolError) as error:
            Desired.from_json({"generation": 1, "config": {"engine_args": args}})
        assert error.value.field == field


def test_observed_names_the_bad_field() -> None:
    good = Observed(1.0, 1, 2.0, "local", "serving", 0, True).to_json()
    assert Observed.from_json(good).state == "serving"
    with pytest.raises(ProtocolError) as error:
        Observed.from_json({**good, "state": "sleeping"})
    assert error.value.field == "state"
    with pytest.raises(ProtocolError) as error:
        Observed.from_json({**good, "applied_generation": -1})
    assert error.value.field == "applied_generation"
    assert Observed.from_json({**good, "seq": 2}).newer_than(good)
    assert not Observed.from_json(good).newer_than({**good, "seq": 5})


# -- the local controller's pure parts and the config file -------------------------------------


def test_launch_for_adds_the_changes_args_to_the_base_launch() -> None:
    base = VllmLaunch("py", "/m", "m", 8000, engine_args=("--max-model-len", "1024"))
    launch = launch_for(base, NodeConfig({"max_num_seqs": 8, "enable_prefix_caching": False},
                                         model="/m-awq"))  # fmt: skip
    assert launch.model == "/m-awq"
    assert launch.engine_args == ("--max-model-len", "1024", "--max-num-seqs", "8",
                                  "--no-enable-prefix-caching")  # fmt: skip
    assert launch_for(base, None) == base


def test_reason_from_log_picks_the_line_that_says_why() -> None:
    log = (
        'INFO starting\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
        "  Value error, User-specified max_model_len (4096) is greater than the derived "
        "max_model_len (max_position_embeddings=2048.0)\n"
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error\n"
    )
    assert reason_from_log(log).startswith("Value error, User-specified max_model_len (4096)")
    assert "unrecognized arguments" in reason_from_log(
        "usage: api_server.py [-h]\napi_server.py: error: unrecognized arguments: --nope\n"
    )


def test_controller_config_builds_a_local_controller_and_names_bad_keys(tmp_path: Path) -> None:
    settings = controller_settings({
        "interval_s": 2, "state_file": str(tmp_path / "s.json"),
        "local": {"python": "/opt/vllm/bin/python", "model": "/m", "served_name": "m",
                  "port": 8000, "base_args": ["--max-model-len", 1024]},
    })  # fmt: skip
    controller = build_controller(settings, httpx.Client())
    assert isinstance(controller, LocalController)
    assert controller.base.engine_args == ("--max-model-len", "1024")
    assert settings.interval_s == 2.0
    for data, message in (
        ({}, "controller: set exactly one of local or kubernetes"),
        ({"local": {"python": "p"}}, "local.model: required"),
        ({"local": {"python": "p", "model": "m", "served_name": "s", "port": 0}},
         "local.port: expected 1..65535"),
        ({"local": {"python": "p", "model": "m", "served_name": "s", "port": 1, "gpu": 1}},
         "local.gpu: unknown key"),
        ({"kubernetes": {"namespace": "n", "deployment": "d", "container": "c",
                         "base_command": ["v"], "model": "m", "served_name": "s"}},
         "kubernetes: set in_cluster, kubeconfig or api_url"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as error:
            build_controller(controller_settings(data), httpx.Client())
        assert str(error.value).startswith(message)


def test_the_agent_cli_refuses_a_bad_controller_config_naming_the_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "controller.yaml"
    config.write_text("local: {python: /opt/vllm/bin/python, model: /m, served_name: m}\n")
    token = tmp_path / "token"
    token.write_text("t")
    done = subprocess.run(
        [sys.executable, "-m", "probes.agent", "--no-nvml", "--server", "http://127.0.0.1:9",
         "--token-file", str(token), "--spool-dir", str(tmp_path / "spool"),
         "--controller-config", str(config)],
        cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "local.port: required" in done.stderr
