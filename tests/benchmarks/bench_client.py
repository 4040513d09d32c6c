"""Benchmark-client benchmarks: its own capacity, and agreement with `vllm bench serve`.

Reproduce with `.venv/bin/python -m tests.benchmarks bench_client` (or `make bench`; the
second figure needs `make vllm-node`). Figures:

- `bench_client_max_tok_s`: streamed tokens per second the client alone sustains on one core.
  The fast fake OpenAI server (`tests/advisor/benchmarking/fake_openai.py`, its own process,
  pinned to the other core) streams one SSE frame per token; the client (this process,
  pinned to core 0) runs a closed loop of 256 users x 512 output tokens. Two shapes: paced (a
  shared 4 ms clock writes one frame to each open stream, 64,000 tok/s offered, so frames
  arrive a few at a time, the demanding case) and unpaced (each answer written at once, frames
  arrive in bulk). The headline is the paced figure (what the client sustained; a lower bound
  of its capacity when it was not the limit). `bench_client_cpu_share` is the client's CPU
  time / wall time during it (below 1.0: the client had headroom) and
  `bench_client_tok_per_cpu_s` the tokens it handled per CPU second of its own (what one
  saturated core would stream). Median of 3 runs. Target >= 5,000.
- `bench_client_vs_vllm_bench_ratio`: on one real vLLM CPU node (tiny model), our client's
  output tok/s divided by `vllm bench serve`'s (run from the vLLM venv as a module), same
  workload: 128 requests, 32 prompt tokens, 128 output tokens (`ignore_eos`), 32 concurrent
  users, 24 interleaved rounds (each client first in every other round; vLLM's client is one
  long-lived process, so a round costs seconds), the median of the per-round ratios (a pair
  of runs shares the machine's load of the moment). Target 0.95-1.05. The ratio of the two medians
  is printed too.
  The machine is shared: the server and both clients run at nice -10 where allowed (root;
  `bench_client_agreement_boosted` says whether it was), each side's spread over the rounds
  is printed. The server runs in the measurement layout of `tests/support/vllm_node.py`
  (EngineCore and Worker, one OpenMP thread, on core 1; API server and both clients on
  core 0; `bench_client_agreement_pinned` says whether it did): unpinned, the engine's
  OpenMP threads and busy loops fight the API server and the clients for the 2 cores and
  identical rounds spread by up to 95%.
  Measured: 1.011, 1.033 and 1.038 with 10 rounds on a quiet host. On 2026-11-28's noisier
  host, where the per-round ratios ranged 0.83-1.32 (printed on a `#` line): 1.064 with
  10 rounds in a fixed order, 0.944 and 1.050 with 10 alternating rounds, 0.990 with 24
  (the committed harness; `bench_client` then takes about 4 minutes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from advisor.benchmarking.runner import Limits, RunOptions, Target, run_benchmark
from advisor.engine.workload import closed_loop_workload
from tests.advisor.benchmarking.fake_openai import MODEL
from tests.benchmarks import Figure
from tests.engine.vllm_bench import BenchPoint
from tests.support.components import free_port, port_open
from tests.support.vllm_node import SERVED_NAME, VLLM_PYTHON, can_pin, pin_front, running_vllm

ROOT = Path(__file__).resolve().parents[2]
CLIENT_CPU, SERVER_CPU = 0, 1
USERS, OUTPUT_TOKENS, TICK_S = 256, 512, 0.004
ROUNDS = 24  # a pair of 3-s runs differs by up to 30% on a noisy host: the median needs many
BOOST_NICE = -10
AGREE = {"num_requests": 128, "prompt": 32, "output": 128, "users": 32}


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _client_capacity() -> Iterator[Figure]:
    port = free_port()
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for label, tick_s in (("paced", TICK_S), ("unpaced", 0.0)):
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.advisor.benchmarking.fake_openai",
             "--port", str(port), "--tick-s", str(tick_s)],
            cwd=ROOT, stdout=subprocess.PIPE, preexec_fn=lambda: _pin(SERVER_CPU),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
                time.sleep(0.1)
            rates, shares, per_cpu = [], [], []
            workload = closed_loop_workload(
                num_requests=2 * USERS, concurrency=USERS, prompt_tokens=16,
                output_tokens=OUTPUT_TOKENS,
            )  # fmt: skip
            for _ in range(3):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                result = run_benchmark(
                    Target(f"http://127.0.0.1:{port}", MODEL),
                    workload,
                    limits=Limits(max_concurrency=USERS),
                    options=RunOptions(metrics_sample_s=0, scrape_metrics=False),
                )
                cpu_s = time.process_time() - cpu0
                share = cpu_s / (time.perf_counter() - wall0)
                if result.status != "completed" or result.summary["failed"]:
                    raise RuntimeError(f"client capacity run failed: {result.error}")
                rates.append(result.output_throughput)
                shares.append(share)
                per_cpu.append(result.summary["total_output_tokens"] / cpu_s)
            results[label] = (rates, shares, per_cpu)
        finally:
            server.terminate()
            server.wait(10)
    paced, paced_share, paced_per_cpu = results["paced"]
    yield Figure("bench_client_max_tok_s", statistics.median(paced), "tok/s", ">= 5000")
    yield Figure("bench_client_cpu_share", statistics.median(paced_share), "cores")
    yield Figure("bench_client_tok_per_cpu_s", statistics.median(paced_per_cpu), "tok/cpu-s")
    unpaced, _share, _per_cpu = results["unpaced"]
    yield Figure("bench_client_max_tok_s_unpaced", statistics.median(unpaced), "tok/s")


@contextmanager
def _priority(nice: int) -> Iterator[bool]:
    """Run at a raised CPU priority (root only); children started meanwhile inherit it."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


# `vllm bench serve` as a long-lived worker in the vLLM venv: one JSON argv per stdin line,
# one JSON result per stdout line, so rounds interleave without re-importing vLLM (~20 s).
WORKER = r"""
import contextlib, io, json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks import serve
parser = FlexibleArgumentParser()
serve.add_cli_args(parser)
for line in sys.stdin:
    args = parser.parse_args(json.loads(line))
    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(args)
    keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None}
    print(json.dumps(keep), flush=True)
"""


@contextmanager
def _on_front_core(pinned: bool) -> Iterator[None]:
    """This process (our client) on the API server's core while the server is pinned."""
    if not pinned:
        yield
        return
    original = os.sched_getaffinity(0)
    pin_front()
    try:
        yield
    finally:
        os.sched_setaffinity(0, original)


@contextmanager
def _vllm_bench_worker(
    pinned: bool = False,
) -> Iterator[Callable[[BenchPoint, str], dict[str, Any]]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    worker = subprocess.Popen(
        [VLLM_PYTHON, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env,
        preexec_fn=pin_front if pinned else None,
    )  # fmt: skip
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None
    assert stdout is not None

    def bench(point: BenchPoint, base_url: str) -> dict[str, Any]:
        stdin.write(json.dumps(point.argv(base_url)) + "\n")
        stdin.flush()
        for line in stdout:
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result
        raise RuntimeError(f"vllm bench serve worker exited ({worker.wait()})")

    try:
        yield bench
    finally:
        stdin.close()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _agreement() -> Iterator[Figure]:
    users, num, prompt, output = (AGREE[k] for k in ("users", "num_requests", "prompt", "output"))
    workload = closed_loop_workload(
        num_requests=num, concurrency=users, prompt_tokens=prompt, output_tokens=output
    )
    ours: list[float] = []
    theirs: list[float] = []
    # The vLLM server and the `vllm bench serve` worker are started from here: at a raised
    # priority they all are, so other work on the shared machine disturbs both clients less.
    # The server runs in the measurement layout (engine on one core, API server on the other)
    # and both clients on the API server's core, so neither client takes the engine's time.
    pinned = can_pin()
    with (
        _priority(BOOST_NICE) as boosted,
        running_vllm(name="bench-client", pinned=pinned) as node,
        _vllm_bench_worker(pinned) as vllm_bench,
        _on_front_core(pinned),
    ):
        base_url = node.launch.base_url
        target = Target(base_url, SERVED_NAME)
        vllm_bench(BenchPoint(users, num, prompt, output, seed=99), base_url)  # warm-up

        def run_ours(round_no: int) -> None:
            # /metrics before and after only, as vllm bench (a scrape costs the server CPU)
            options = RunOptions(seed=round_no, metrics_sample_s=0)
            result = run_benchmark(target, workload, options=options)
            if result.status != "completed" or result.summary["failed"]:
                raise RuntimeError(f"our client failed: {result.error}")
            ours.append(result.output_throughput)

        def run_theirs(round_no: int) -> None:
            point = BenchPoint(users, num, prompt, output, seed=round_no)
            theirs.append(float(vllm_bench(point, base_url)["output_throughput"]))

        for round_no in range(ROUNDS):
            # each client goes first in half of the rounds: neither gains from its position
            first, second = (run_ours, run_theirs) if round_no % 2 == 0 else (run_theirs, run_ours)
            first(round_no)
            second(round_no)
    paired = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"# per-round ratios (ours first in even rounds): {[round(r, 3) for r in paired]}")
    yield Figure("bench_client_vs_vllm_bench_ratio", statistics.median(paired), "x", "0.95-1.05")
    yield Figure("bench_client_vs_vllm_bench_ratio_of_medians",
                 statistics.median(ours) / statistics.median(theirs), "x")  # fmt: skip
    yield Figure("bench_client_agreement_boosted", float(boosted), "bool")
    yield Figure("bench_client_agreement_pinned", float(pinned), "bool")
    for label, values in (("ours", ours), ("vllm_bench", theirs)):
        spread = (max(values) - min(values)) / statistics.median(values)
        yield Figure(f"bench_client_agreement_{label}_tok_s", statistics.median(values), "tok/s")
        yield Figure(f"bench_client_agreement_{label}_spread", spread, "fraction")


def run() -> Iterator[Figure]:
    original = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    _pin(CLIENT_CPU)
    try:
        yield from _client_capacity()
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    yield from _agreement()
