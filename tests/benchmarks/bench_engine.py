"""Engine benchmarks: simulator speed, error on published cases, fidelity on a real vLLM node.

Reproduce with `make bench` or `.venv/bin/python -m tests.benchmarks bench_engine`
(needs `make vllm-node` for the third figure). Figures:

- `sim_requests_per_s`: simulated requests per wall second on one core (numba is
  single-threaded): a continuous-batching Llama-3-8B BF16 replica on one H100-SXM with vLLM
  defaults serving 1,000,000 requests bootstrapped from the Azure 2023 conversation trace
  (`resample_workload`, seed 0, its own arrival rate). Median of 3 runs after a warm-up run
  that compiles (or loads the cached) inner loop. Also printed: the same at 4x the rate
  (a busier replica). Target >= 1,000,000.
- `public_test_median_ape_throughput`, `_tpot`, `_ttft`: `python -m advisor.engine validate
  advisor/engine/data/public_cases.csv --split test` with the built-in profiles (fitted on the
  train split only), the median absolute percentage error over the test split's cases of
  each metric family: throughput (output, total and request rates, per system or per GPU),
  TPOT (median/mean TPOT and median ITL) and TTFT (median/mean); unmodellable cases count as
  failures (infinite error). Targets <= 0.15, 0.25, 0.35. The train figures are printed beside
  them (info), and `public_cases_unmodellable` counts the rows of either split the engine
  cannot model (target 0).
- `public_test_balanced_median_ape_*` (and `_train_`): per metric family, the median over
  the split's sources of each source's median error (one vote per source: 220 of the test
  split's 293 rows are one source). Reported beside the targets.
- `hardware_choice_cheapest_agreement` / `_order_agreement`: of the six workloads InferenceMAX
  measured gpt-oss-120b on B200, H100-SXM and H200-SXM (vLLM 0.13.0, train rows), the share
  where the engine's cheapest kind per million output tokens (catalog prices) is the
  measured one, and where its whole order is (`tests/engine/public_kinds.py`).
- `prefix_cache_fidelity_ape`: see `tests/engine/vllm_prefix_bench.py` (caching on and off,
  output tok/s and engine TTFT, measured vs predicted; target <= 0.15). 2026-12-08: 0.51 and
  0.72 (not met; the on/off ratios agree, the level at 4 clients with 832-token prompts does
  not; the module docstring says what is missing).
- `validate_500_cases_s`: wall seconds `validate_cases` takes for the corpus (after a warm-up),
  scaled to 500 cases at the corpus's own mix (about 60 published runs of 1-4 metrics each;
  the metrics of one run share its simulation). Target < 30.
- `vllm_cpu_fidelity_mape`: a real vLLM CPU node (tiny model) measured with
  `vllm bench serve` at concurrency 1, 4, 16, 32, 64 (32-token prompts, 128 output tokens,
  closed loops, 9 interleaved rounds after a warm-up round, with 1 and 16 measured twice per
  round, medians over the runs), a CPU profile fitted (tok/s, TPOT, TTFT) on 1 and 16 only,
  then the mean absolute percentage error of the predicted output tok/s and TPOT at 4, 32
  and 64 (`vllm_cpu_fidelity_mape_median_ttft_s` reports TTFT's, outside the target). Output
  tok/s is vLLM's client-side figure; TPOT and TTFT are the engine's per-request figures read
  from /metrics around each run (see
  `tests/engine/vllm_bench.py`: on this shared 2-core machine the client-side TPOT collapses
  whenever the API server, short of CPU, coalesces frames). The server runs in the
  measurement layout of `tests/support/vllm_node.py` (engine on core 1 with one OpenMP
  thread, API server and client on core 0). Target <= 0.15. The per-point spread of the
  runs (`vllm_cpu_measurement_spread_max`) and `vllm_cpu_foreign_cpu_share` (cores' worth of
  CPU that other work on the machine took during the measurement) are printed beside it, so
  a noisy figure can be told from a wrong model: the error at 64 amplifies any error in the
  slope between the medians at 1 and 16 about fourfold.
  Measured (each a whole `bench_engine` run on an idle machine, foreign CPU 0.014-0.018
  cores): on 2026-11-28 early, identical runs spread 7-10%: 0.052, 0.068, 0.045 (fitted on
  tok/s and TPOT only), 0.076, 0.052. Later that day on a fresh machine whose identical runs
  spread 30-60% with nothing else on it (the host's noise): with 6 rounds 0.068, 0.144,
  0.052; with 9 rounds 0.156, 0.049; with 9 rounds and the calibration points measured twice
  per round (the current harness) 0.034, 0.114. While other test suites ran beside it,
  0.12-0.24. On 2026-12-08 on an idle machine (foreign CPU 0.03 cores) but identical runs
  drifting 44-78% over the measurement: 0.169.
  Same run: sim_requests_per_s 1.07M (4x rate 2.50M), validate_500_cases_s 2.6.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from advisor.engine.calibration import FitError
from advisor.engine.cases import read_cases, validate_cases
from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.perf import Deployment
from advisor.engine.profiles import DEFAULT_PROFILES
from advisor.engine.sim import Replica, simulate, vllm_default_scheduler
from advisor.engine.workload import load_azure_trace, resample_workload
from tests.benchmarks import Figure

ROOT = Path(__file__).resolve().parents[2]
CONV = ROOT / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
PUBLIC = ROOT / "advisor" / "engine" / "data" / "public_cases.csv"
NUM_REQUESTS = 1_000_000


def _sim_speed() -> Iterator[Figure]:
    h100 = DEFAULT_CATALOG.gpu("H100-SXM")
    deployment = Deployment(
        h100, DEFAULT_CATALOG.model("Llama-3-8B"), DEFAULT_CATALOG.quant("bf16")
    )
    replica = Replica(
        deployment, vllm_default_scheduler(h100), DEFAULT_PROFILES.lookup(h100.name, "vllm")
    )
    trace = load_azure_trace(CONV)
    workload = resample_workload(trace, np.random.default_rng(0), num_requests=NUM_REQUESTS)
    simulate(replica, workload.head(1000))  # compile or load the cached inner loop
    for label, load in (("", workload), ("_4x_rate", workload.time_scaled(0.25))):
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            result = simulate(replica, load)
            seconds.append(time.perf_counter() - started)
        metrics = result.metrics()
        print(
            f"# sim{label}: {load.num_requests} requests at {load.mean_rate_rps:.1f} rps, "
            f"runs {[round(s, 3) for s in seconds]} s, completed {metrics.completed}, "
            f"output {metrics.output_throughput_tok_s:.0f} tok/s, "
            f"p50 TPOT {metrics.tpot_s.p50 * 1e3:.1f} ms, preemptions {metrics.preemptions}"
        )
        yield Figure(
            f"sim_requests_per_s{label}",
            load.num_requests / statistics.median(seconds),
            "requests/s",
            ">= 1000000" if not label else "",
        )


TARGETS = {"throughput": "<= 0.15", "tpot": "<= 0.25", "ttft": "<= 0.35"}


def _public_cases() -> Iterator[Figure]:
    cases = read_cases(PUBLIC)
    validate_cases(cases[:2], DEFAULT_PROFILES)  # compile (or load) the simulator first
    started = time.perf_counter()
    report = validate_cases(cases, DEFAULT_PROFILES)
    elapsed_s = time.perf_counter() - started
    for prediction in report.predictions:
        shown = "unmodellable" if prediction.predicted is None else f"{prediction.predicted:.4g}"
        case = prediction.case
        print(f"# {case.split}/{case.id}: measured {case.value:.4g} predicted {shown} "
              f"error {prediction.ape:.1%}")  # fmt: skip
    for split in ("test", "train"):
        for family, median in report.family_medians(split).items():
            if family in TARGETS:
                target = TARGETS[family] if split == "test" else ""
                yield Figure(f"public_{split}_median_ape_{family}", median, "fraction", target)
        for family, median in report.balanced_family_medians(split).items():
            if family in TARGETS:
                yield Figure(f"public_{split}_balanced_median_ape_{family}", median, "fraction")
    yield Figure("public_cases_unmodellable", len(report.failures), "cases", "= 0")
    yield from _kind_choices()
    yield Figure("validate_500_cases_s", 500 * elapsed_s / len(cases), "s", "< 30")


def _kind_choices() -> Iterator[Figure]:
    from tests.engine.public_kinds import kind_choices

    choices = kind_choices()
    for choice in choices:
        measured = {k: round(v, 3) for k, v in choice.measured_usd_per_mtok.items()}
        predicted = {k: round(v, 3) for k, v in choice.predicted_usd_per_mtok.items()}
        print(f"# kinds at {choice.workload}: measured {choice.measured_order} predicted "
              f"{choice.predicted_order} ($/M tokens measured {measured}, "
              f"predicted {predicted})")  # fmt: skip
    cheapest = sum(c.predicted_order[0] == c.measured_order[0] for c in choices)
    order = sum(c.predicted_order == c.measured_order for c in choices)
    yield Figure("hardware_choice_cheapest_agreement", cheapest / len(choices), "fraction")
    yield Figure("hardware_choice_order_agreement", order / len(choices), "fraction")


def _fidelity() -> Iterator[Figure]:
    from tests.engine.vllm_bench import PREDICT_AT, fidelity
    from tests.support.vllm_node import running_vllm, tree_cpu_s

    busy_before, ours_before, started = _machine_busy_cpu_s(), _our_cpu_s(), time.monotonic()
    with running_vllm(name="bench-engine", pinned=True) as process:
        report = fidelity(
            process.launch.base_url, rounds=9, calibration_runs=2, server_pid=process.pid,
            pinned=True,
        )  # fmt: skip
        # the node and its clients need both cores: CPU time the machine spent on anything
        # else disturbs them (the clients have been waited for: they count in _our_cpu_s)
        node_cpu_s = tree_cpu_s(process.pid) if process.pid is not None else 0.0
        ours_cpu_s = _our_cpu_s() - ours_before + node_cpu_s
        foreign_cpu_s = _machine_busy_cpu_s() - busy_before - ours_cpu_s
        wall_s = time.monotonic() - started
    print(f"# other work on the machine during the measurement: {foreign_cpu_s:.1f} CPU-s "
          f"in {wall_s:.0f} s")  # fmt: skip
    for line in report.lines():
        print(f"# {line}")
    yield Figure("vllm_cpu_fidelity_mape", report.mape, "fraction", "<= 0.15")
    yield Figure("vllm_cpu_calibration_fit_median_ape", report.fit.median_ape, "fraction")
    by_metric: dict[str, list[FitError]] = {}
    for error in report.predictions:
        by_metric.setdefault(error.label.split()[-1], []).append(error)
    by_metric["median_ttft_s"] = list(report.ttft)  # reported beside the target, not in it
    for metric, errors in sorted(by_metric.items()):
        yield Figure(
            f"vllm_cpu_fidelity_mape_{metric}", float(np.mean([e.ape for e in errors])), "fraction"
        )
    yield Figure("vllm_cpu_foreign_cpu_share", max(foreign_cpu_s, 0.0) / wall_s, "cores")
    yield Figure(
        "vllm_cpu_measurement_spread_max",
        max(report.spread(c) for c in PREDICT_AT),
        "fraction",
    )


def _machine_busy_cpu_s() -> float:
    """CPU-seconds the whole machine has been busy since boot (/proc/stat, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _our_cpu_s() -> float:
    """CPU-seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _prefix_fidelity() -> Iterator[Figure]:
    from tests.engine.vllm_prefix_bench import prefix_fidelity

    report = prefix_fidelity()
    for line in report.lines():
        print(f"# {line}")
    yield Figure("prefix_cache_fidelity_ape", report.ape, "fraction", "<= 0.15")


def run() -> Iterator[Figure]:
    yield from _sim_speed()
    yield from _public_cases()
    yield from _fidelity()
    yield from _prefix_fidelity()
