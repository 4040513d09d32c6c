"""Local node controller: the agent supervises the vLLM process of this machine.

Applying a config stops the serving process (a GPU cannot hold two copies of the weights),
starts vLLM with the new engine args, waits for /health and a smoke completion, and only
then calls it applied. If the new process exits, never answers /health within
`ready_timeout_s`, or fails the smoke request, it is stopped, the previous args are started
again (same checks), and `ApplyError` says why (the tail of vLLM's log: e.g. the pydantic
validation error of a bad `max_model_len`), with `restored=False` when even the previous
config did not come back. A config naming a checkpoint that is not on this machine (no
config.json in the directory or in the Hugging Face cache) is refused before anything stops.

The served process is a child of the agent (its own process group): when the agent exits,
vLLM stops too (`close`). A process that exits on its own is noticed by `check()` (counted in
`restarts`, its exit status kept in `last_exit`) and started again by `restart()`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from probes.agent.controller import ApplyError, Health, smoke_request
from probes.agent.desired import NodeConfig
from probes.agent.model_config import checkpoint_missing
from probes.agent.vllm_process import (
    VllmLaunch,
    VllmProcess,
    VllmStartError,
    engine_args_to_argv,
    is_healthy,
)

log = logging.getLogger(__name__)
# Lines of vLLM's log that say why it refused to start (argparse, pydantic, RuntimeError).
_WHY = re.compile(r"(error|Error|refused|not supported|Unsupported|exceeds|greater than)")
# Lines that match but never say why: links, leak reports and warnings printed at exit.
_NOISE = ("File ", "Traceback", "raise ", "For further information", "See http", "- leaked",
          "nanobind", "warnings.warn", "resource_tracker")  # fmt: skip


def launch_for(base: VllmLaunch, config: NodeConfig | None) -> VllmLaunch:
    """The base launch (interpreter, model, port, fixed args) with a config's changes."""
    if config is None:
        return base
    return replace(
        base,
        model=config.model or base.model,
        engine_args=(*base.engine_args, *engine_args_to_argv(config.engine_args)),
    )


def reason_from_log(text: str) -> str:
    """The most telling line of a failed start (the last one naming an error), else the tail."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _WHY.search(line) and not any(noise in line for noise in _NOISE):
            return line[:1000]
    return " | ".join(lines[-3:])[:1000] or "(no output)"


class LocalController:
    """Supervises one vLLM server process (see the module docstring)."""

    kind = "local"

    def __init__(
        self,
        base: VllmLaunch,
        *,
        log_dir: Path,
        client: httpx.Client,
        ready_timeout_s: float = 600.0,
        smoke: bool = True,
    ) -> None:
        self.base = base
        self.log_dir = log_dir
        self.client = client
        self.ready_timeout_s = ready_timeout_s
        self.smoke = smoke
        self.restarts = 0
        self._last_exit: dict[str, Any] | None = None
        self._config: NodeConfig | None = None
        self._process: VllmProcess | None = None
        self._exit_seen = False

    @property
    def base_url(self) -> str:
        return self.base.base_url

    @property
    def served_name(self) -> str:
        return self.base.served_name

    @property
    def last_exit(self) -> Mapping[str, Any] | None:
        return self._last_exit

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running_config(self) -> NodeConfig:
        # The base launch is the empty config: a rollback to it is adopted, not restarted.
        return self._config if self._config is not None else NodeConfig()

    def start(self, config: NodeConfig | None) -> None:
        """Start `config` when nothing runs (the agent's start); raises ApplyError."""
        if self._process is not None and self._process.running():
            return
        try:
            self._launch(config)
        except RuntimeError as exc:
            self._stop()
            raise ApplyError(str(exc), restored=False) from exc
        self._config = config

    def apply(self, config: NodeConfig) -> None:
        if config.replicas is not None or config.autoscaling:
            # One process on one machine has no replicas to scale: refuse before stopping it.
            raise ApplyError(
                "replicas and autoscaling need the kubernetes controller; this node runs one "
                "local vLLM process",
                restored=True,
            )
        if config.model:
            # A checkpoint that is not here would leave the node down until the previous
            # config came back: refuse before stopping what serves.
            missing = checkpoint_missing(config.model, {**os.environ, **self.base.env})
            if missing is not None:
                raise ApplyError(f"{missing}; nothing was stopped", restored=True)
        previous = self._config
        self._stop()
        try:
            self._launch(config)
        except RuntimeError as exc:
            reason = str(exc)
            log.warning("new config failed (%s); restoring the previous one", reason)
            self._stop()
            try:
                self._launch(previous)
            except RuntimeError as restore_exc:
                self._stop()
                raise ApplyError(
                    f"{reason}; restoring the previous config failed too: {restore_exc}",
                    restored=False,
                ) from restore_exc
            self._config = previous
            raise ApplyError(reason, restored=True) from exc
        self._config = config

    def restart(self) -> None:
        self._stop()
        try:
            self._launch(self._config)
        except RuntimeError as exc:
            self._stop()
            raise ApplyError(str(exc), restored=False) from exc

    def check(self) -> Health:
        process = self._process
        if process is None:
            return Health(running=False, healthy=False, detail="no vLLM process")
        if not process.running():
            if not self._exit_seen:  # count each unexpected exit once
                self._exit_seen = True
                self.restarts += 1
                code = process._process.returncode if process._process else None
                self._last_exit = {"code": code, "at": time.time(), "pid": process.pid}
                log.warning("vLLM (pid %s) exited with status %s", process.pid, code)
            code = self._last_exit.get("code") if self._last_exit else None
            return Health(running=False, healthy=False, detail=f"vLLM exited with status {code}")
        healthy = is_healthy(self.base_url)
        return Health(running=True, healthy=healthy, detail="" if healthy else "/health failing")

    def close(self) -> None:
        self._stop()

    # -- helpers ---------------------------------------------------------------------------

    def _launch(self, config: NodeConfig | None) -> None:
        """Start `config` and check it serves; raises RuntimeError with the reason."""
        launch = launch_for(self.base, config)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        process = VllmProcess(launch, self.log_dir / f"vllm-{launch.port}-{stamp}.log")
        self._process = process
        self._exit_seen = False
        try:
            process.start(ready_timeout_s=self.ready_timeout_s)
        except VllmStartError as exc:
            raise RuntimeError(
                f"vLLM did not start: {reason_from_log(process.log_tail(60)) or exc}"
            ) from exc
        if self.smoke:
            smoke_request(self.client, self.base_url, self.served_name)

    def _stop(self) -> None:
        if self._process is not None:
            self._exit_seen = True  # a stop we asked for is not an unexpected exit
            self._process.stop()
