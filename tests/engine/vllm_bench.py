"""Fidelity against a real vLLM CPU node, measured with vLLM's own benchmark client.

`fidelity(base_url)` measures closed loops of 32-token prompts and 128 output tokens at
concurrencies 1, 4, 16, 32 and 64 with `vllm bench serve` (run as a module in the vLLM venv,
so nothing of vLLM leaks into our interpreter), fits a CPU profile to output tok/s, TPOT and
TTFT at concurrencies 1 and 16 only, predicts 4, 32 and 64 and reports the mean absolute
percentage error of output tok/s (client side) and TPOT there (the target), and TTFT's beside
it. TPOT and TTFT are the server's own per-request figures
(`vllm:request_time_per_output_token_seconds`, from engine-core timestamps, read from
/metrics around each run); the client's median TPOT is kept in the raw runs. Used by
`tests/engine/test_fidelity.py` and `tests/benchmarks/bench_engine.py`.

The machine is shared and has 2 cores: each concurrency is measured in several rounds
(interleaved) and the median is kept; the report counts the runs whose token stream arrived
coalesced (median ITL far below median TPOT: the API server fell behind for lack of CPU),
which is why TPOT comes from the engine. Where the OS allows it (root), the server's
processes and the benchmark client run at a raised CPU priority (nice -10) for the
measurement, so unrelated work on the machine disturbs them less; their original priorities
are restored afterwards. With `pinned=True` (the server started by
`running_vllm(pinned=True)`, as `bench_engine` does) the client runs on the API server's core,
off the engine's (see `tests/support/vllm_node.py`, measurement layout); the session node
used by `test_fidelity` is not pinned.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from advisor.engine.calibration import (
    FitError,
    FitResult,
    MeasuredPoint,
    evaluate_points,
    fit_points,
)
from advisor.engine.catalog import DEFAULT_CATALOG, model_from_hf_config
from advisor.engine.perf import CalibrationProfile, Deployment
from advisor.engine.profiles import CPU_DEV_VLLM_PROFILE
from advisor.engine.sim import Replica, SchedulerConfig, vllm_default_scheduler
from tests.support.vllm_node import TINY_MODEL, VLLM_PYTHON, pin_front, process_tree

INPUT_LEN = 32
OUTPUT_LEN = 128
CALIBRATE_AT = (1, 16)
PREDICT_AT = (4, 32, 64)
FIT = ("step_overhead_s", "seq_overhead_s", "compute_efficiency", "api_latency_s")
# Fitted on all three figures, as the product calibrates from a user's benchmark
# (`advisor.benchmarking.prediction.calibrate`). TTFT is the engine's own (engine-core
# timestamps), so the API server's frame coalescing does not reach it. Fitted on throughput and
# TPOT alone, the API latency soaked up the client's turnaround between requests (8.9 ms instead
# of 2 ms) and TTFT came out 60-160% high at every concurrency; with TTFT in the fit, the
# throughput and TPOT errors stayed the same (pinned node, 2026-11-28, 5 rounds at 1 to 64).
FIT_METRICS = ("output_tok_per_s", "median_tpot_s", "median_ttft_s")
TARGET_METRICS = ("output_tok_per_s", "median_tpot_s")  # the 0.15 target

# Besides vLLM's client-side result, each run records the server's own counters around it:
# per-request TPOT and TTFT that the engine computes from engine-core timestamps
# (vllm:request_time_per_output_token_seconds, vllm:time_to_first_token_seconds).
CLIENT = r"""
import contextlib, io, json, sys, urllib.request
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks import serve
SUMS = ("vllm:request_time_per_output_token_seconds", "vllm:time_to_first_token_seconds")
def counters(base_url):
    text = urllib.request.urlopen(base_url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        for name in SUMS:
            for part in ("_sum", "_count"):
                if line.startswith(name + part + "{") or line.startswith(name + part + " "):
                    out[name + part] = out.get(name + part, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
parser = FlexibleArgumentParser()
serve.add_cli_args(parser)
for argv in json.loads(sys.argv[1]):
    args = parser.parse_args(argv)
    before = counters(args.base_url)
    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(args)
    after = counters(args.base_url)
    keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None}
    for name, key in zip(SUMS, ("engine_tpot_mean_ms", "engine_ttft_mean_ms")):
        count = after.get(name + "_count", 0.0) - before.get(name + "_count", 0.0)
        total = after.get(name + "_sum", 0.0) - before.get(name + "_sum", 0.0)
        keep[key] = 1000.0 * total / count if count else None
    print(json.dumps(keep), flush=True)
"""


@dataclass(frozen=True)
class BenchPoint:
    """One `vllm bench serve` run: closed loop of `concurrency` clients, fixed lengths."""

    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    seed: int = 0

    def argv(self, base_url: str) -> list[str]:
        return [
            "--backend", "openai", "--base-url", base_url, "--endpoint", "/v1/completions",
            "--model", "tiny-llama", "--tokenizer", TINY_MODEL,
            "--dataset-name", "random",
            "--random-input-len", str(self.input_len),
            "--random-output-len", str(self.output_len),
            "--random-range-ratio", "0", "--ignore-eos",
            "--num-prompts", str(self.num_prompts), "--max-concurrency", str(self.concurrency),
            "--request-rate", "inf", "--seed", str(self.seed), "--disable-tqdm",
            "--num-warmups", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
        ]  # fmt: skip


class Run(Protocol):
    """Anything that gives `vllm bench serve` its command line for a server."""

    def argv(self, base_url: str) -> list[str]: ...


BOOST_NICE = -10


def _tids_of_tree(pid: int) -> list[int]:
    """Thread ids of a process and all its descendants (Linux /proc)."""
    return [
        int(task.name)
        for process in process_tree(pid)
        for task in Path(f"/proc/{process}/task").glob("[0-9]*")
    ]


@contextmanager
def boosted(pid: int | None) -> Iterator[None]:
    """Raise the CPU priority of a process tree for the duration (no-op without permission)."""
    before: dict[int, int] = {}
    if pid is not None:
        for tid in _tids_of_tree(pid):
            try:
                before[tid] = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, BOOST_NICE)
            except OSError:  # not root, or the thread is gone
                before.pop(tid, None)
    try:
        yield
    finally:
        for tid, priority in before.items():
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, priority)


def _nice_child() -> None:
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, BOOST_NICE)


def _nice_pinned_child() -> None:
    _nice_child()
    pin_front()


def run_vllm_bench(
    base_url: str, points: Sequence[Run], *, timeout_s: float = 1200.0, pinned: bool = False
) -> list[dict[str, float]]:
    """Run the benchmark for each point in turn, in one client process (vLLM imports once).

    `pinned`: the server runs in the measurement layout (`running_vllm(pinned=True)`), so the
    client goes to the front core beside the API server, off the engine's core.
    Returns vLLM's result fields per point (ms, tok/s, req/s).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [VLLM_PYTHON, "-c", CLIENT, json.dumps([point.argv(base_url) for point in points])],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
        preexec_fn=_nice_pinned_child if pinned else _nice_child,  # the child's priority/cores
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(lines) != len(points):
        raise RuntimeError(f"vllm bench serve failed ({done.returncode}): {done.stderr[-2000:]}")
    return [json.loads(line) for line in lines]


def prompts_for(concurrency: int) -> int:
    return max(4 * concurrency, 16)


def is_clean(result: dict[str, float]) -> bool:
    """False when tokens arrived in bursts (the API server, starved of CPU, coalesced frames).

    Then TTFT swallows most of the request and TPOT and ITL collapse towards zero, so TPOT is
    compared with the whole request's time per token and ITL with TPOT.
    """
    tpot = float(result["median_tpot_ms"])
    per_token = float(result["median_e2el_ms"]) / OUTPUT_LEN
    return tpot >= 0.5 * per_token and float(result["median_itl_ms"]) >= 0.25 * tpot


def engine_tpot_ms(run: dict[str, float]) -> float:
    """The run's TPOT as the engine measured it (falls back to the client's median TPOT)."""
    value = run.get("engine_tpot_mean_ms")
    return float(value) if value else float(run["median_tpot_ms"])


def engine_ttft_ms(run: dict[str, float]) -> float:
    """The run's TTFT as the engine measured it (falls back to the client's median TTFT)."""
    value = run.get("engine_ttft_mean_ms")
    return float(value) if value else float(run["median_ttft_ms"])


def measured_point(concurrency: int, runs: Sequence[dict[str, float]]) -> MeasuredPoint:
    """A calibration point from the medians over a point's runs.

    TPOT and TTFT are the engine's per-request figures (engine-core timestamps, mean over
    the run's requests, which in a closed loop of equal requests is also their median):
    unlike the client's, they do not collapse or balloon when the API server coalesces
    frames for lack of CPU, so every run counts and the median over runs absorbs the rest.
    """
    clean = list(runs)
    completed = sum(float(run["completed"]) for run in clean)
    input_tokens = sum(float(run["total_input_tokens"]) for run in clean)
    return MeasuredPoint(
        concurrency=concurrency,
        input_tokens=max(round(input_tokens / max(completed, 1.0)), 1),
        output_tokens=OUTPUT_LEN,
        output_tok_per_s=statistics.median(float(run["output_throughput"]) for run in clean),
        median_ttft_s=statistics.median(engine_ttft_ms(run) for run in clean) / 1e3,
        median_tpot_s=statistics.median(engine_tpot_ms(run) for run in clean) / 1e3,
        num_requests=prompts_for(concurrency),
    )


def cpu_replica(profile: CalibrationProfile = CPU_DEV_VLLM_PROFILE) -> Replica:
    """The session vLLM node as the engine sees it: tiny model, 1 GiB KV, vLLM CPU defaults."""
    hardware = DEFAULT_CATALOG.gpu("CPU-DEV-2C")
    deployment = Deployment(
        hardware,
        model_from_hf_config(Path(TINY_MODEL) / "config.json"),
        DEFAULT_CATALOG.quant("bf16"),
        kv_cache_bytes=1024**3,  # VLLM_CPU_KVCACHE_SPACE=1
        max_model_len=1024,  # tests/support/vllm_node.py BASE_ARGS
    )
    scheduler: SchedulerConfig = vllm_default_scheduler(hardware)
    return Replica(deployment, scheduler, profile)


@dataclass(frozen=True)
class FidelityReport:
    """Calibration at `CALIBRATE_AT`, predictions at `PREDICT_AT`, and the raw runs."""

    fit: FitResult
    predictions: tuple[FitError, ...]  # TARGET_METRICS at PREDICT_AT
    ttft: tuple[FitError, ...]  # median TTFT at PREDICT_AT (reported, not in the target)
    points: dict[int, MeasuredPoint]
    runs: dict[int, list[dict[str, float]]] = field(repr=False)

    @property
    def mape(self) -> float:
        return float(np.mean([error.ape for error in self.predictions]))

    def spread(self, concurrency: int) -> float:
        """Relative spread (max - min) / median of output tok/s over this point's runs."""
        values = [float(run["output_throughput"]) for run in self.runs[concurrency]]
        return (max(values) - min(values)) / statistics.median(values) if values else 0.0

    def lines(self) -> list[str]:
        out = [f"fitted on concurrency {CALIBRATE_AT}: {self.fit.profile}"]
        out += [f"fit {e.label}: measured {e.measured:.4g} fitted {e.predicted:.4g} ({e.ape:.1%})"
                for e in self.fit.errors]  # fmt: skip
        out += [f"predict {e.label}: measured {e.measured:.4g} predicted {e.predicted:.4g} "
                f"({e.ape:.1%})" for e in (*self.predictions, *self.ttft)]  # fmt: skip
        for concurrency, runs in sorted(self.runs.items()):
            clean = sum(is_clean(run) for run in runs)
            out.append(f"concurrency {concurrency}: {len(runs)} runs, {clean} clean, "
                       f"spread {self.spread(concurrency):.1%}, tok/s "
                       f"{[round(float(run['output_throughput'])) for run in runs]}, engine TPOT "
                       f"ms {[round(engine_tpot_ms(run), 2) for run in runs]}")  # fmt: skip
        return out


def fidelity(
    base_url: str,
    *,
    rounds: int = 3,
    calibration_runs: int = 1,
    server_pid: int | None = None,
    pinned: bool = False,
) -> FidelityReport:
    """Measure, calibrate on two concurrencies, predict three others (see module docstring).

    `rounds` interleaved rounds over all concurrencies, after a warm-up round; each round
    measures the calibration concurrencies `calibration_runs` times (the extra runs at the
    round's end, on fresh prompts): their noise reaches every prediction, the error at 64
    amplifying the slope between 1 and 16. `pinned`: the server runs in the measurement layout
    (`running_vllm(pinned=True)`).
    """
    concurrencies = sorted({*CALIBRATE_AT, *PREDICT_AT})
    # warm-up: compile the shapes of every batch size the rounds will see
    warm = [BenchPoint(c, c, INPUT_LEN, OUTPUT_LEN, seed=99) for c in (64, 32, 16, 4, 1)]
    runs: dict[int, list[dict[str, float]]] = {c: [] for c in concurrencies}
    with boosted(server_pid):
        run_vllm_bench(base_url, warm, pinned=pinned)
        passes = [(0, c) for c in concurrencies] + [
            (repeat, c) for repeat in range(1, calibration_runs) for c in reversed(CALIBRATE_AT)
        ]
        plan = [
            BenchPoint(c, prompts_for(c), INPUT_LEN, OUTPUT_LEN, seed=round_no + 1000 * repeat)
            for round_no in range(rounds)
            for repeat, c in passes
        ]
        for point, result in zip(plan, run_vllm_bench(base_url, plan, pinned=pinned), strict=True):
            runs[point.concurrency].append(result)
    points = {c: measured_point(c, runs[c]) for c in concurrencies}
    replica = cpu_replica()
    fit = fit_points(
        deployment=replica.deployment,
        scheduler=replica.scheduler,
        points=[points[c] for c in CALIBRATE_AT],
        start=CPU_DEV_VLLM_PROFILE,
        fit=FIT,
        metrics=FIT_METRICS,
        source=f"vLLM CPU node at concurrency {CALIBRATE_AT}",
    )
    fitted, unseen = cpu_replica(fit.profile), [points[c] for c in PREDICT_AT]
    predictions = evaluate_points(fitted, unseen, metrics=TARGET_METRICS)
    ttft = evaluate_points(fitted, unseen, metrics=("median_ttft_s",))
    return FidelityReport(fit, predictions, ttft, points, runs)
