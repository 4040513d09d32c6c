"""A real vLLM CPU server on the tiny local model (built by `make vllm-node`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from probes.agent.vllm_process import VllmLaunch, VllmProcess, VllmStartError
from tests.support.components import free_port, missing

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = os.environ.get("GCA_VLLM_PYTHON", str(ROOT / "var/cache/vllm-venv/bin/python"))
TINY_MODEL = os.environ.get("GCA_TINY_MODEL", str(ROOT / "var/cache/tiny-llama"))
# The tiny model quantized to 4-bit AWQ (`tiny_awq.py`): a second checkpoint vLLM CPU serves.
TINY_MODEL_AWQ = os.environ.get("GCA_TINY_MODEL_AWQ", str(ROOT / "var/cache/tiny-llama-awq"))
SERVED_NAME = "tiny-llama"
# CPU-friendly defaults; KV cache size on CPU comes from VLLM_CPU_KVCACHE_SPACE (GiB).
BASE_ARGS = ("--max-model-len", "1024", "--dtype", "bfloat16")
LOG_DIR = ROOT / "var" / "test-logs"


def tiny_launch(
    extra_args: Sequence[str] = (), port: int | None = None, env: Mapping[str, str] | None = None
) -> VllmLaunch:
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
            **(env or {}),
        },
    )


def tiny_model_awq() -> str:
    """The AWQ checkpoint's directory, quantized from the tiny model with the vLLM venv's
    python if missing (about 2 s).

    Written beside the cached tiny model (gitignored var/cache) under a temporary name and
    renamed into place, so a concurrent build cannot leave half a checkpoint.
    """
    out = Path(TINY_MODEL_AWQ)
    if (out / "config.json").exists():
        return str(out)
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        subprocess.run(
            [VLLM_PYTHON, str(ROOT / "tests/support/tiny_awq.py"), TINY_MODEL, str(scratch)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        try:
            scratch.rename(out)
        except OSError:  # another session built it meanwhile
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(out)


# Measurement layout (benchmarks only, see `pin_measurement`): the engine (vLLM's EngineCore
# and its Worker, one OpenMP thread) on one core, the API server and the benchmark client on
# the other. Unpinned, the Worker runs 2 OpenMP threads (vLLM cannot lower torch's thread
# count after "nobind") whose spin-waits and barriers compete with the EngineCore's
# shared-memory busy loop (sched_yield), the API server and the client for the 2 cores: with
# the machine otherwise idle, identical rounds of `vllm bench serve` spread 19-45% in output
# tok/s (engine TPOT 40-78%) at concurrency 1, 16 and 64, 3 rounds each; pinned this way,
# 7-10% (TPOT 2-13%), and 1.6x the throughput at 64. Other work on the machine still lands on
# the engine's core (nice -10 only shrinks its share). Not for the session node: several
# servers run side by side there and would share the one engine core.
ENGINE_CPUS = frozenset({1})
FRONT_CPUS = frozenset({0})
PINNED_ENV = {"OMP_NUM_THREADS": "1"}


def can_pin() -> bool:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    return cpus >= ENGINE_CPUS | FRONT_CPUS


def pin_front() -> None:
    """Pin the calling process (a benchmark client) to the front core, beside the API server."""
    if can_pin():
        os.sched_setaffinity(0, FRONT_CPUS)


def pin_measurement(server_pid: int) -> bool:
    """Pin a started server's engine processes to ENGINE_CPUS, the rest of it to FRONT_CPUS.

    Every thread of every process in the tree; the engine processes are those vLLM names
    `VLLM::EngineCore` and `VLLM::Worker`. False (nothing pinned) where the machine lacks the
    cores or the engine processes are not found.
    """
    if not can_pin():
        return False
    processes = process_tree(server_pid)
    engine = [pid for pid, comm in processes.items() if comm.startswith("VLLM::")]
    if not engine:
        return False
    for pid in processes:
        cpus = ENGINE_CPUS if pid in engine else FRONT_CPUS
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:  # the thread is gone
                continue
    return True


def process_tree(pid: int) -> dict[int, str]:
    """Process ids of `pid` and its descendants, with their names (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree: dict[int, str] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            tree[current] = Path(f"/proc/{current}/comm").read_text().strip()
        except OSError:
            continue
    return tree


def tree_cpu_s(pid: int) -> float:
    """CPU-seconds used so far by `pid`, its descendants and the children they have waited for."""
    ticks = 0
    for process in process_tree(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_vllm(
    extra_args: Sequence[str] = (), name: str = "vllm", *, pinned: bool = False
) -> Iterator[VllmProcess]:
    """Start a real vLLM CPU server and stop it afterwards (about 60-75 s to become ready).

    `pinned`: the measurement layout (one OpenMP thread, engine and front on a core each, see
    `pin_measurement`; clients call `pin_front`), for benchmarks that need repeatable rounds.
    Falls back to the plain layout where it cannot pin.
    """
    if not Path(VLLM_PYTHON).exists() or not (Path(TINY_MODEL) / "config.json").exists():
        missing("vLLM CPU node", f"{VLLM_PYTHON} or {TINY_MODEL} missing: run `make vllm-node`")
    pinned = pinned and can_pin()
    launch = tiny_launch(extra_args, env=PINNED_ENV if pinned else None)
    process = VllmProcess(launch, LOG_DIR / f"{name}-{launch.port}.log")
    try:
        process.start()
    except VllmStartError as exc:
        raise RuntimeError(f"real vLLM CPU node failed to start: {exc}") from exc
    if pinned and process.pid is not None:
        pin_measurement(process.pid)
    try:
        yield process
    finally:
        process.stop()
