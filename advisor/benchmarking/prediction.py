"""Predicted vs measured: the engine simulates the benchmark's own workload on the same node.

`EngineTarget` says what the engine needs to know about a node (hardware kind from the
catalog, model, precision, KV space, vLLM args); `predict` simulates a `Workload` on it and
returns the figures under `vllm bench serve` names, so `prediction_errors` can line them up
with a run's summary. Engine args the simulator does not model (speculative decoding, for
one) are listed in `unmodelled`, so nobody mistakes a prediction for one that saw them.

Calibration: `measured_points` turns closed-loop runs with fixed lengths into the engine's
`MeasuredPoint`s and `calibrate` fits a profile to them (`advisor.engine.calibration`), with
the fit error per point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advisor.engine.calibration import FitResult, MeasuredPoint, fit_points
from advisor.engine.catalog import DEFAULT_CATALOG, Catalog, resolve_model
from advisor.engine.perf import CalibrationProfile, ConfigError, Deployment
from advisor.engine.sim import Replica, SchedulerConfig, simulate, vllm_default_scheduler
from advisor.engine.workload import Workload

# vLLM args the simulator models, and where they go.
SCHEDULER_ARGS = ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill")
DEPLOYMENT_ARGS = (
    "max_model_len", "tensor_parallel_size", "kv_cache_dtype", "gpu_memory_utilization",
)  # fmt: skip
# Args that change nothing the simulator would see (addresses, names, logging, dtype spelled
# out for the weights the precision already says).
NEUTRAL_ARGS = frozenset({
    "host", "port", "served_model_name", "model", "dtype", "disable_log_requests",
    "disable_log_stats", "uvicorn_log_level", "api_key", "block_size", "enable_prefix_caching",
})  # fmt: skip
# Calibrated parameters by default: those the engine's own fidelity harness fits on a node.
DEFAULT_FIT = ("step_overhead_s", "seq_overhead_s", "compute_efficiency", "api_latency_s")
COMPARED = (
    "output_throughput", "request_throughput", "median_ttft_ms", "p99_ttft_ms",
    "median_tpot_ms", "p99_tpot_ms", "median_e2el_ms", "p99_e2el_ms",
)  # fmt: skip


class PredictionError(ValueError):
    """The node cannot be described to the engine; the message names the field."""


@dataclass(frozen=True)
class EngineTarget:
    """A node as the engine sees it; `engine_args` use vLLM's names (`max_num_seqs`, ...)."""

    hardware: str
    model: str
    quant: str = "bf16"
    engine: str = "vllm"
    kv_cache_bytes: int | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)

    def with_args(self, extra: Mapping[str, Any]) -> EngineTarget:
        return EngineTarget(self.hardware, self.model, self.quant, self.engine,
                            self.kv_cache_bytes, {**self.engine_args, **extra})  # fmt: skip

    @property
    def unmodelled(self) -> list[str]:
        known = set(SCHEDULER_ARGS) | set(DEPLOYMENT_ARGS) | NEUTRAL_ARGS
        return sorted(name for name in self.engine_args if name not in known)

    def replica(self, profile: CalibrationProfile, catalog: Catalog = DEFAULT_CATALOG) -> Replica:
        args = self.engine_args
        try:
            hardware = catalog.gpu(self.hardware)
            deployment = Deployment(
                hardware,
                resolve_model(self.model, catalog),
                catalog.quant(self.quant),
                kv_dtype=str(args.get("kv_cache_dtype", "auto")),
                tensor_parallel=int(args.get("tensor_parallel_size", 1)),
                gpu_memory_utilization=float(args.get("gpu_memory_utilization", 0.9)),
                max_model_len=_optional_int(args.get("max_model_len")),
                kv_cache_bytes=self.kv_cache_bytes,
            )
            defaults = vllm_default_scheduler(hardware)
            scheduler = SchedulerConfig(
                max_num_seqs=int(args.get("max_num_seqs", defaults.max_num_seqs)),
                max_num_batched_tokens=int(
                    args.get("max_num_batched_tokens", defaults.max_num_batched_tokens)
                ),
                enable_chunked_prefill=bool(args.get("enable_chunked_prefill", True)),
            )
            return Replica(deployment, scheduler, profile)
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            raise PredictionError(f"engine target: {exc}") from exc


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def argv_to_engine_args(argv: Sequence[str]) -> dict[str, Any]:
    """`["--max-num-seqs", "64", "--no-enable-chunked-prefill"]` -> vLLM arg names and values.

    The inverse of `probes.agent.vllm_process.engine_args_to_argv`: numbers become numbers,
    JSON objects (`--speculative-config '{...}'`) become dicts, a flag alone is True and
    `--no-x` is x False.
    """
    out: dict[str, Any] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        flag = items[i]
        if not flag.startswith("--"):
            raise PredictionError(f"engine args: expected a --flag at position {i}, got {flag!r}")
        name = flag[2:].replace("-", "_")
        has_value = i + 1 < len(items) and not items[i + 1].startswith("--")
        if not has_value:
            if name.startswith("no_"):
                out[name[3:]] = False
            else:
                out[name] = True
            i += 1
            continue
        raw = items[i + 1]
        value: Any = raw
        for parse in (int, float, json.loads):
            try:
                value = parse(raw)
                break
            except ValueError:
                continue
        out[name] = value
        i += 2
    return out


def predict(replica: Replica, workload: Workload) -> dict[str, float | None]:
    """The engine's simulation of `workload`, named like a run's summary."""
    metrics = simulate(replica, workload).metrics()

    def ms(value: float) -> float | None:
        return value * 1000.0 if math.isfinite(value) else None

    return {
        "output_throughput": metrics.output_throughput_tok_s,
        "request_throughput": metrics.request_throughput_rps,
        "median_ttft_ms": ms(metrics.ttft_s.p50),
        "p99_ttft_ms": ms(metrics.ttft_s.p99),
        "median_tpot_ms": ms(metrics.tpot_s.p50),
        "p99_tpot_ms": ms(metrics.tpot_s.p99),
        "median_e2el_ms": ms(metrics.e2e_s.p50),
        "p99_e2el_ms": ms(metrics.e2e_s.p99),
        "preemptions": float(metrics.preemptions),
        "max_kv_cache_usage": metrics.kv_usage_peak,
    }


def prediction_errors(
    predicted: Mapping[str, float | None], measured: Mapping[str, Any]
) -> dict[str, Any]:
    """Per figure: predicted, measured and the relative error (predicted / measured - 1).

    `median_abs_error` is the median of the absolute relative errors that could be computed.
    """
    out: dict[str, Any] = {}
    errors: list[float] = []
    for name in COMPARED:
        guess, seen = predicted.get(name), measured.get(name)
        error = None
        if isinstance(guess, int | float) and isinstance(seen, int | float) and seen > 0:
            error = guess / seen - 1.0
            errors.append(abs(error))
        out[name] = {"predicted": guess, "measured": seen, "error": error}
    out["median_abs_error"] = float(np.median(errors)) if errors else None
    return out


def measured_point(
    status: str, summary: Mapping[str, Any], workload: Workload
) -> MeasuredPoint | None:
    """A calibration point from a completed closed-loop run with fixed lengths, else None."""
    if status != "completed" or workload.max_concurrency is None:
        return None
    if np.any(workload.arrival_s != workload.arrival_s[0]):
        return None  # open loop: not what the engine's closed-loop points describe
    if np.unique(workload.prompt_tokens).size != 1 or np.unique(workload.output_tokens).size != 1:
        return None

    def positive(name: str, scale: float = 1.0) -> float | None:
        value = summary.get(name)
        return value * scale if isinstance(value, int | float) and value > 0 else None

    try:
        return MeasuredPoint(
            concurrency=int(workload.max_concurrency),
            input_tokens=int(workload.prompt_tokens[0]),
            output_tokens=int(workload.output_tokens[0]),
            output_tok_per_s=positive("output_throughput"),
            median_ttft_s=positive("median_ttft_ms", 1e-3),
            median_tpot_s=positive("median_tpot_ms", 1e-3),
            num_requests=workload.num_requests,
        )
    except ConfigError:
        return None  # nothing measured (every figure missing)


def calibrate(
    target: EngineTarget,
    points: Sequence[MeasuredPoint],
    *,
    start: CalibrationProfile,
    fit: Sequence[str] = DEFAULT_FIT,
    source: str,
    catalog: Catalog = DEFAULT_CATALOG,
) -> FitResult:
    """Fit `fit` parameters of `start` to the points; the result carries per-point errors."""
    replica = target.replica(start, catalog)
    try:
        return fit_points(
            deployment=replica.deployment,
            scheduler=replica.scheduler,
            points=points,
            start=start,
            fit=fit,
            source=source,
        )
    except ConfigError as exc:
        raise PredictionError(f"calibration: {exc}") from exc
