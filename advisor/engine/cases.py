"""Published measurement cases (the `public_cases.csv` format) and how the engine predicts them.

`read_cases(path)` parses and checks a CSV with the columns of `public_cases.csv`; a malformed
row raises `CaseError` naming its line, id and field. `predict_case(case, profiles)` builds
the deployment, scheduler and workload the case describes, simulates it and returns the
predicted value of the case's metric; a case the engine cannot model (unknown hardware or
model, a model that does not fit, lengths missing where they matter) raises `Unmodellable`
with the reason. `validate_cases` runs all of them and reports the absolute percentage error
per case and the median over all cases, where unmodellable cases count as failures
(infinite error).

Conventions for what a case leaves open, stated once here and printed as assumptions:
- concurrency `max` means offline throughput: `OFFLINE_REQUESTS` requests sent at once;
  concurrency N means N closed-loop clients sending `max(8 N, 16)` requests in all;
- a blank `tp` takes the smallest power of two that divides the GPUs and the heads and keeps
  the weights under half of each device's usable memory; `num_gpus / tp` replicas serve in
  parallel and throughput metrics are per system (all replicas);
- blank lengths at concurrency 1 (a decode-speed case) assume 128 prompt and 256 output
  tokens; at higher concurrency the case is unmodellable;
- the scheduler is the engine's default for the hardware (`engine_scheduler`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advisor.engine.catalog import DEFAULT_CATALOG, Catalog, CatalogError, HardwareSpec
from advisor.engine.perf import ConfigError, Deployment
from advisor.engine.profiles import ProfileSet
from advisor.engine.results import ServingMetrics
from advisor.engine.sim import Replica, SchedulerConfig, simulate, vllm_default_scheduler
from advisor.engine.workload import Workload, closed_loop_workload

CASE_COLUMNS = (
    "id",
    "source",
    "engine",
    "gpu",
    "num_gpus",
    "tp",
    "model",
    "weight_dtype",
    "kv_dtype",
    "input_len",
    "output_len",
    "concurrency",
    "metric",
    "value",
    "notes",
)
METRICS = (
    "output_tok_s",
    "req_s",
    "total_tok_s",
    "median_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "median_e2e_ms",
)
THROUGHPUT_METRICS = ("output_tok_s", "req_s", "total_tok_s")
ENGINES = ("vllm", "sglang", "trtllm")
OFFLINE_REQUESTS = 2000
DECODE_SPEED_INPUT = 128
DECODE_SPEED_OUTPUT = 256


class CaseError(ValueError):
    """A malformed case file or row; the message names the line, the case id and the field."""


class Unmodellable(Exception):  # a well-formed case the engine cannot model
    """A well-formed case the engine cannot model; the message says why."""


@dataclass(frozen=True)
class Case:
    """One published measurement: a configuration, a metric and its measured value."""

    id: str
    source: str
    engine: str
    gpu: str
    num_gpus: int
    tp: int | None
    model: str
    weight_dtype: str
    kv_dtype: str
    input_len: int | None
    output_len: int | None
    concurrency: int | None  # None: "max" (offline throughput)
    metric: str
    value: float
    notes: str = ""
    line: int = 0


def _int(raw: str, name: str, where: str, *, blank_ok: bool = False) -> int | None:
    text = raw.strip()
    if not text:
        if blank_ok:
            return None
        raise CaseError(f"{where}: field {name} is required")
    try:
        value = int(text)
    except ValueError:
        raise CaseError(f"{where}: field {name} must be an integer, got {text!r}") from None
    if value < 1:
        raise CaseError(f"{where}: field {name} must be >= 1, got {value}")
    return value


def parse_case(row: Mapping[str, str | None], line: int) -> Case:
    """Check one CSV row; `line` is its line number in the file (for messages)."""
    values = {name: (row.get(name) or "").strip() for name in CASE_COLUMNS}
    case_id = values["id"]
    where = f"line {line}" + (f" (case {case_id})" if case_id else "")
    for name in ("id", "engine", "gpu", "model", "weight_dtype", "metric"):
        if not values[name]:
            raise CaseError(f"{where}: field {name} is required")
    num_gpus = _int(values["num_gpus"], "num_gpus", where)
    tp = _int(values["tp"], "tp", where, blank_ok=True)
    assert num_gpus is not None
    if tp is not None and tp > num_gpus:
        raise CaseError(f"{where}: field tp ({tp}) exceeds num_gpus ({num_gpus})")
    if tp is not None and num_gpus % tp:
        raise CaseError(f"{where}: field num_gpus ({num_gpus}) is not a multiple of tp ({tp})")
    concurrency_text = values["concurrency"].lower()
    concurrency = (
        None
        if concurrency_text == "max"
        else _int(values["concurrency"], "concurrency (an integer or max)", where)
    )
    metric = values["metric"]
    if metric not in METRICS:
        raise CaseError(f"{where}: field metric must be one of {list(METRICS)}, got {metric!r}")
    try:
        value = float(values["value"])
    except ValueError:
        raise CaseError(f"{where}: field value must be a number, got {values['value']!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise CaseError(f"{where}: field value must be a positive number, got {value}")
    return Case(
        id=case_id,
        source=values["source"],
        engine=values["engine"].lower(),
        gpu=values["gpu"],
        num_gpus=num_gpus,
        tp=tp,
        model=values["model"],
        weight_dtype=values["weight_dtype"],
        kv_dtype=values["kv_dtype"] or "auto",
        input_len=_int(values["input_len"], "input_len", where, blank_ok=True),
        output_len=_int(values["output_len"], "output_len", where, blank_ok=True),
        concurrency=concurrency,
        metric=metric,
        value=value,
        notes=values["notes"],
        line=line,
    )


def read_cases(path: str | Path) -> list[Case]:
    """Read a case CSV; `CaseError` on a missing column, a malformed row or a repeated id."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CaseError(f"{source}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CaseError(f"{source}: not UTF-8 text: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    absent = [name for name in CASE_COLUMNS if name not in header and name != "notes"]
    if absent:
        raise CaseError(f"{source}: missing column(s) {absent}; expected {','.join(CASE_COLUMNS)}")
    reader.fieldnames = header
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        if None in row:
            raise CaseError(f"line {line}: more fields than the header has columns")
        case = parse_case(row, line)
        if case.id in seen:
            raise CaseError(f"line {line}: field id {case.id!r} repeats line {seen[case.id]}")
        seen[case.id] = line
        cases.append(case)
    if not cases:
        raise CaseError(f"{source}: no cases")
    return cases


def engine_scheduler(engine: str, hardware: HardwareSpec) -> SchedulerConfig:
    """Default batching limits of each engine (what a published run without tuning used).

    vLLM: its API-server defaults (`vllm_default_scheduler`). SGLang: chunked prefill 8192
    tokens, up to 1024 running requests. TensorRT-LLM (trtllm-bench): max batch 2048, 8192
    tokens per step.
    """
    if engine == "vllm":
        return vllm_default_scheduler(hardware)
    if engine == "sglang":
        return SchedulerConfig(max_num_seqs=1024, max_num_batched_tokens=8192)
    if engine == "trtllm":
        return SchedulerConfig(max_num_seqs=2048, max_num_batched_tokens=8192)
    raise Unmodellable(f"engine: unknown {engine!r}; known: {', '.join(ENGINES)}")


@dataclass(frozen=True)
class CaseSetup:
    """How a case is modelled: one replica, how many of them, and the workload."""

    replica: Replica
    replicas: int
    workload: Workload
    assumptions: tuple[str, ...] = field(default=())


def _auto_tp(case: Case, catalog: Catalog) -> int:
    hardware = catalog.gpu(case.gpu)
    model = catalog.model(case.model)
    quant = catalog.quant(case.weight_dtype)
    tp = 1
    while tp <= case.num_gpus:
        if case.num_gpus % tp == 0 and model.num_heads % tp == 0:
            try:
                deployment = Deployment(hardware, model, quant, case.kv_dtype, tp)
            except ConfigError:
                deployment = None
            half = (
                hardware.memory_bytes * deployment.gpu_memory_utilization / 2 if deployment else 0
            )
            if deployment and deployment.weight_bytes / tp <= half:
                return tp
        tp *= 2
    raise Unmodellable(f"tp: no tensor-parallel size up to {case.num_gpus} fits {model.name}")


def case_setup(case: Case, profiles: ProfileSet, catalog: Catalog = DEFAULT_CATALOG) -> CaseSetup:
    """Translate a case into what the simulator runs (see the module docstring)."""
    assumptions: list[str] = []
    try:
        hardware = catalog.gpu(case.gpu)
        model = catalog.model(case.model)
        quant = catalog.quant(case.weight_dtype)
        tp = case.tp
        if tp is None:
            tp = _auto_tp(case, catalog)
            assumptions.append(f"tp={tp} (smallest that leaves half the memory for KV)")
        deployment = Deployment(hardware, model, quant, case.kv_dtype, tp)
        scheduler = engine_scheduler(case.engine, hardware)
        replica = Replica(deployment, scheduler, profiles.lookup(hardware.name, case.engine))
    except (CatalogError, ConfigError) as exc:
        raise Unmodellable(str(exc)) from None
    input_len, output_len = case.input_len, case.output_len
    if input_len is None or output_len is None:
        if case.concurrency != 1:
            raise Unmodellable(
                "input_len/output_len: required for a case at concurrency "
                f"{case.concurrency or 'max'} (throughput depends on them)"
            )
        input_len = input_len or DECODE_SPEED_INPUT
        output_len = output_len or DECODE_SPEED_OUTPUT
        assumptions.append(
            f"lengths {input_len}/{output_len} (decode speed barely depends on them)"
        )
    if input_len + output_len > deployment.effective_max_model_len:
        raise Unmodellable(
            f"input_len + output_len = {input_len + output_len} exceeds max_model_len "
            f"{deployment.effective_max_model_len} of {model.name}"
        )
    if case.concurrency is None:
        workload = closed_loop_workload(
            num_requests=OFFLINE_REQUESTS,
            concurrency=OFFLINE_REQUESTS,
            prompt_tokens=input_len,
            output_tokens=output_len,
        )
        assumptions.append(f"offline: {OFFLINE_REQUESTS} requests at once")
    else:
        workload = closed_loop_workload(
            num_requests=max(8 * case.concurrency, 16),
            concurrency=case.concurrency,
            prompt_tokens=input_len,
            output_tokens=output_len,
        )
    return CaseSetup(replica, case.num_gpus // tp, workload, tuple(assumptions))


def metric_value(metrics: ServingMetrics, metric: str, replicas: int) -> float:
    """The case metric from simulated metrics (throughputs scaled to all replicas)."""
    values = {
        "output_tok_s": metrics.output_throughput_tok_s * replicas,
        "req_s": metrics.request_throughput_rps * replicas,
        "total_tok_s": metrics.total_throughput_tok_s * replicas,
        "median_ttft_ms": metrics.ttft_s.p50 * 1000,
        "median_tpot_ms": metrics.tpot_s.p50 * 1000,
        "median_itl_ms": metrics.itl_s.p50 * 1000,
        "median_e2e_ms": metrics.e2e_s.p50 * 1000,
    }
    return values[metric]


@dataclass(frozen=True)
class CasePrediction:
    case: Case
    predicted: float | None
    reason: str = ""  # why it could not be modelled
    assumptions: tuple[str, ...] = ()

    @property
    def ape(self) -> float:
        """Absolute percentage error as a fraction (inf when not modelled)."""
        if self.predicted is None:
            return math.inf
        return abs(self.predicted - self.case.value) / self.case.value


def predict_case(
    case: Case, profiles: ProfileSet, catalog: Catalog = DEFAULT_CATALOG
) -> CasePrediction:
    try:
        setup = case_setup(case, profiles, catalog)
    except Unmodellable as exc:
        return CasePrediction(case, None, str(exc))
    metrics = simulate(setup.replica, setup.workload).metrics()
    value = metric_value(metrics, case.metric, setup.replicas)
    if not math.isfinite(value):
        return CasePrediction(case, None, f"metric: {case.metric} undefined for this case")
    return CasePrediction(case, value, assumptions=setup.assumptions)


@dataclass(frozen=True)
class ValidationReport:
    predictions: tuple[CasePrediction, ...]

    @property
    def median_ape(self) -> float:
        return float(np.median([p.ape for p in self.predictions]))

    @property
    def failures(self) -> tuple[CasePrediction, ...]:
        return tuple(p for p in self.predictions if p.predicted is None)


def validate_cases(
    cases: Sequence[Case], profiles: ProfileSet, catalog: Catalog = DEFAULT_CATALOG
) -> ValidationReport:
    return ValidationReport(tuple(predict_case(case, profiles, catalog) for case in cases))
