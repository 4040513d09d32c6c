"""A real vLLM CPU server on the tiny local model (built by `make vllm-node`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from probes.agent.vllm_process import VllmLaunch, VllmProcess, VllmStartError
from tests.support.components import free_port, missing

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = os.environ.get("GCA_VLLM_PYTHON", str(ROOT / "var/cache/vllm-venv/bin/python"))
TINY_MODEL = os.environ.get("GCA_TINY_MODEL", str(ROOT / "var/cache/tiny-llama"))
SERVED_NAME = "tiny-llama"
# CPU-friendly defaults; KV cache size on CPU comes from VLLM_CPU_KVCACHE_SPACE (GiB).
BASE_ARGS = ("--max-model-len", "1024", "--dtype", "bfloat16")
LOG_DIR = ROOT / "var" / "test-logs"


def tiny_launch(extra_args: Sequence[str] = (), port: int | None = None) -> VllmLaunch:
    return VllmLaunch(
        python=VLLM_PYTHON,
        model=TINY_MODEL,
        served_name=SERVED_NAME,
        port=port or free_port(),
        engine_args=(*BASE_ARGS, *extra_args),
        # "nobind": by default every CPU vLLM pins its worker to core 0, so two servers (or a
        # server and the test client) would share one core while the other sits idle.
        env={
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            # vllm-cpu 0.32 cannot load its own AOT compile cache ("no attribute
            # 'finalize_loading'") and recompiles on every start (~25-50 s here); the plain
            # inductor cache loads, so every start after the first skips compiling.
            "VLLM_USE_AOT_COMPILE": "0",
        },
    )


@contextmanager
def running_vllm(extra_args: Sequence[str] = (), name: str = "vllm") -> Iterator[VllmProcess]:
    """Start a real vLLM CPU server and stop it afterwards (about 60-75 s to become ready)."""
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    launch = tiny_launch(extra_args)
    process = VllmProcess(launch, LOG_DIR / f"{name}-{launch.port}.log")
    try:
        process.start()
    except VllmStartError as exc:
        raise RuntimeError(f"real vLLM CPU node failed to start: {exc}") from exc
    try:
        yield process
    finally:
        process.stop()
