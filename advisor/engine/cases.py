"""Published measurement cases (the `public_cases.csv` format) and how the engine predicts them.

`read_cases(path)` parses and checks a CSV with the columns of `public_cases.csv`; a malformed
row raises `CaseError` naming its line, id and field. `predict_case(case, profiles)` builds
the deployment, scheduler and workload the case describes, simulates it and returns the
predicted value of the case's metric; a case the engine cannot model (unknown hardware or
model, a model that does not fit, lengths missing where they matter) raises `Unmodellable`
with the reason. `validate_cases` runs all of them and reports the absolute percentage error
per case, the median over all cases and, per split and metric, the median of each group;
unmodellable cases count as failures (infinite error).

Required columns are `CASE_COLUMNS`; the optional `OPTIONAL_COLUMNS` describe the run more
closely (a file may carry any subset, rows may leave them blank):
- `source_url`, `engine_version`, `date`: where the number was published, the engine
  version it ran and when (free text, kept for the record);
- `split`: `train` or `test` (`fit-public` fits on train rows only);
- `num_prompts`: requests in the run; `request_rate`: requests per second (Poisson, as
  `vllm bench serve --request-rate`), blank = all sent at once (up to the concurrency);
- `dataset`: e.g. `random`, `sharegpt` (lengths of a dataset run are its mean lengths; a
  `sharegpt` run without bounds draws them from `sharegpt_lengths`);
- `input_len_min`/`input_len_max`, `output_len_min`/`output_len_max`: the length spread,
  uniform integers between the bounds (a bound left blank is the nominal length), e.g.
  InferenceMAX's `--random-range-ratio 0.8` with its client gives [0.8 L, L];
- `ep`, `dp`: expert- and data-parallel sizes as published (recorded; the engine models TP);
- `max_model_len`, `gpu_memory_utilization`: the server's flags where the source gives them
  (they size the KV cache and, on vLLM V0, the tokens per step); blank takes the model's
  maximum length and vLLM's 0.9.
The `model` column takes a catalog name or a config.json path (ending in `.json`, relative to
the CSV file), read with `model_from_hf_dict`.

Conventions for what a case leaves open, stated once here and printed as assumptions:
- concurrency `max` means all requests at once: `num_prompts` of them, or `OFFLINE_REQUESTS`
  when blank; concurrency N means N closed-loop clients sending `num_prompts` requests, or
  `max(8 N, 16)` when blank; with a `request_rate` the requests arrive as a Poisson process
  and concurrency N caps the requests in flight (`max`: no cap);
- a blank `tp` takes the smallest power of two that divides the GPUs and the heads and keeps
  the weights under half of each device's usable memory; `num_gpus / tp` replicas serve in
  parallel and throughput metrics are per system (all replicas), `*_per_gpu` ones divided
  by `num_gpus`;
- blank lengths at concurrency 1 (a decode-speed case) assume 128 prompt and 256 output
  tokens; at higher concurrency the case is unmodellable;
- the scheduler is the engine's default for the hardware and, for vLLM, for the release in
  `engine_version` (`engine_scheduler`; V0 before 0.8, V1 after; a version that is not a
  release number, e.g. `main at PR #n` or `nightly`, is taken as current);
- windowed and linear-attention layers are folded at the case's own context, input_len +
  output_len / 2 (`Deployment.reference_context_tokens`).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from advisor.engine.catalog import (
    DEFAULT_CATALOG,
    Catalog,
    CatalogError,
    HardwareSpec,
    ModelSpec,
    model_from_hf_config,
)
from advisor.engine.perf import ConfigError, Deployment
from advisor.engine.profiles import ProfileSet
from advisor.engine.results import ServingMetrics
from advisor.engine.sim import (
    Replica,
    SchedulerConfig,
    simulate,
    vllm_default_scheduler,
    vllm_engine_generation,
)
from advisor.engine.workload import Workload, gamma_arrivals_s

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
OPTIONAL_COLUMNS = (
    "source_url",
    "engine_version",
    "date",
    "split",
    "num_prompts",
    "request_rate",
    "dataset",
    "input_len_min",
    "input_len_max",
    "output_len_min",
    "output_len_max",
    "ep",
    "dp",
    "max_model_len",
    "gpu_memory_utilization",
)
METRICS = (
    "output_tok_s",
    "req_s",
    "total_tok_s",
    "output_tok_s_per_gpu",
    "total_tok_s_per_gpu",
    "median_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "median_e2e_ms",
    "mean_ttft_ms",
    "mean_tpot_ms",
    "mean_e2e_ms",
)
THROUGHPUT_METRICS = (
    "output_tok_s",
    "req_s",
    "total_tok_s",
    "output_tok_s_per_gpu",
    "total_tok_s_per_gpu",
)
SPLITS = ("train", "test")
# Metric families the fidelity targets are stated for (median over a split's cases of each).
METRIC_FAMILIES = {
    "throughput": THROUGHPUT_METRICS,
    "tpot": ("median_tpot_ms", "mean_tpot_ms", "median_itl_ms"),
    "ttft": ("median_ttft_ms", "mean_ttft_ms"),
    "e2e": ("median_e2e_ms", "mean_e2e_ms"),
}
ENGINES = ("vllm", "sglang", "trtllm")
OFFLINE_REQUESTS = 2000
DECODE_SPEED_INPUT = 128
DECODE_SPEED_OUTPUT = 256
WORKLOAD_SEED = 0  # lengths and arrivals drawn for a case are the same on every run
# ShareGPT conversation lengths are skewed: in vLLM's benchmark sampling of ShareGPT_V3 the
# median prompt and output are about half their means, a lognormal of sigma sqrt(2 ln 2).
SHAREGPT_LOG_SIGMA = math.sqrt(2 * math.log(2))
# vLLM's benchmark drops ShareGPT pairs with a prompt or output under 4 tokens, a prompt over
# 1024 or prompt + output over 2048 (benchmarks/benchmark_dataset.py is_valid_sequence).
SHAREGPT_MIN_TOKENS = 4
SHAREGPT_MAX_PROMPT_TOKENS = 1024
SHAREGPT_MAX_TOTAL_TOKENS = 2048


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
    concurrency: int | None  # None: "max" (all requests at once)
    metric: str
    value: float
    notes: str = ""
    line: int = 0
    source_url: str = ""
    engine_version: str = ""
    date: str = ""
    split: str | None = None  # None: not assigned
    num_prompts: int | None = None
    request_rate_rps: float | None = None  # None: all at once
    dataset: str = ""
    input_len_min: int | None = None
    input_len_max: int | None = None
    output_len_min: int | None = None
    output_len_max: int | None = None
    ep: int | None = None
    dp: int | None = None
    model_config: Path | None = None  # the model column as a config.json path, resolved
    max_model_len: int | None = None  # the server's --max-model-len (blank: the model's)
    gpu_memory_utilization: float | None = None  # the server's flag (blank: vLLM's 0.9)


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


def _positive_float(raw: str, name: str, where: str) -> float | None:
    text = raw.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CaseError(f"{where}: field {name} must be a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise CaseError(f"{where}: field {name} must be a positive number, got {text!r}")
    return value


def _utilization(raw: str, where: str) -> float | None:
    value = _positive_float(raw, "gpu_memory_utilization", where)
    if value is not None and value > 1.0:
        raise CaseError(f"{where}: field gpu_memory_utilization must be in (0, 1], got {value}")
    return value


def _length_bounds(
    values: Mapping[str, str], prefix: str, nominal: int | None, where: str
) -> tuple[int | None, int | None]:
    low = _int(values[f"{prefix}_min"], f"{prefix}_min", where, blank_ok=True)
    high = _int(values[f"{prefix}_max"], f"{prefix}_max", where, blank_ok=True)
    if (low is not None or high is not None) and nominal is None:
        raise CaseError(f"{where}: field {prefix}_min/{prefix}_max need {prefix}")
    lowest = low if low is not None else nominal
    highest = high if high is not None else nominal
    if lowest is not None and highest is not None and lowest > highest:
        raise CaseError(f"{where}: field {prefix}_min ({lowest}) exceeds {prefix}_max ({highest})")
    return low, high


def parse_case(row: Mapping[str, str | None], line: int, base_dir: Path | None = None) -> Case:
    """Check one CSV row; `line` is its line number in the file (for messages).

    `base_dir` is the CSV's directory: a `model` ending in `.json` is a config.json path
    relative to it and must exist.
    """
    names = (*CASE_COLUMNS, *OPTIONAL_COLUMNS)
    values = {name: (row.get(name) or "").strip() for name in names}
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
    split = values["split"].lower() or None
    if split is not None and split not in SPLITS:
        raise CaseError(f"{where}: field split must be one of {list(SPLITS)}, got {split!r}")
    input_len = _int(values["input_len"], "input_len", where, blank_ok=True)
    output_len = _int(values["output_len"], "output_len", where, blank_ok=True)
    input_min, input_max = _length_bounds(values, "input_len", input_len, where)
    output_min, output_max = _length_bounds(values, "output_len", output_len, where)
    model_config = None
    if values["model"].lower().endswith(".json"):
        model_config = (base_dir or Path.cwd()) / values["model"]
        if not model_config.is_file():
            raise CaseError(f"{where}: field model: no config.json at {model_config}")
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
        input_len=input_len,
        output_len=output_len,
        concurrency=concurrency,
        metric=metric,
        value=value,
        notes=values["notes"],
        line=line,
        source_url=values["source_url"],
        engine_version=values["engine_version"],
        date=values["date"],
        split=split,
        num_prompts=_int(values["num_prompts"], "num_prompts", where, blank_ok=True),
        request_rate_rps=_positive_float(values["request_rate"], "request_rate", where),
        dataset=values["dataset"],
        input_len_min=input_min,
        input_len_max=input_max,
        output_len_min=output_min,
        output_len_max=output_max,
        ep=_int(values["ep"], "ep", where, blank_ok=True),
        dp=_int(values["dp"], "dp", where, blank_ok=True),
        model_config=model_config,
        max_model_len=_int(values["max_model_len"], "max_model_len", where, blank_ok=True),
        gpu_memory_utilization=_utilization(values["gpu_memory_utilization"], where),
    )


def read_cases(path: str | Path) -> list[Case]:
    """Read a case CSV; `CaseError` on a missing column, a malformed row or a repeated id.

    Files with only the `CASE_COLUMNS` (the original format) and files that add any of
    `OPTIONAL_COLUMNS` are both accepted.
    """
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
        case = parse_case(row, line, source.parent)
        if case.id in seen:
            raise CaseError(f"line {line}: field id {case.id!r} repeats line {seen[case.id]}")
        seen[case.id] = line
        cases.append(case)
    if not cases:
        raise CaseError(f"{source}: no cases")
    return cases


_RELEASE = re.compile(r"^\s*v?(\d+)\.(\d+)")


def release_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a release number such as `0.7.4.dev181+gf35f8e22`; None for text
    that is no release number (`main at PR #23151`, `nightly (2025-12-04)`, blank)."""
    match = _RELEASE.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def engine_scheduler(
    engine: str,
    hardware: HardwareSpec,
    *,
    version: tuple[int, int] | None = None,
    model: ModelSpec | None = None,
    max_model_len: int | None = None,
) -> SchedulerConfig:
    """Default batching limits of each engine (what a published run without tuning used).

    vLLM: its API-server defaults for the release (`vllm_default_scheduler`; `version` None
    is the current one, and `model` with the server's `max_model_len` (default the model's)
    decides V0's chunked prefill and step size). SGLang: chunked prefill
    8192 tokens, up to 1024 running requests. TensorRT-LLM (trtllm-bench): max batch 2048,
    8192 tokens per step.
    """
    if engine == "vllm":
        if model is None:
            return vllm_default_scheduler(hardware, version=version)
        mla = any(layer.attention.kind == "mla" for layer in model.layers)
        return vllm_default_scheduler(
            hardware,
            version=version,
            max_model_len=max_model_len or model.max_position_embeddings,
            mla=mla,
        )
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
    engine_generation: str = "v1"  # the profile's generation ("v0": vLLM before 0.8)

    @property
    def num_gpus(self) -> int:
        return self.replicas * self.replica.deployment.tensor_parallel


@functools.lru_cache(maxsize=64)
def _config_model(path: Path) -> ModelSpec:
    # named after the file (`org--name.json` -> `org--name`), not its folder
    return dataclasses.replace(model_from_hf_config(path), name=path.stem)


def case_model(case: Case, catalog: Catalog = DEFAULT_CATALOG) -> ModelSpec:
    """The case's model: its config.json when the column is a path, else the catalog entry."""
    if case.model_config is not None:
        return _config_model(case.model_config)
    return catalog.model(case.model)


def _auto_tp(case: Case, catalog: Catalog) -> int:
    hardware = catalog.gpu(case.gpu)
    model = case_model(case, catalog)
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


def _lengths(
    rng: np.random.Generator, count: int, nominal: int, low: int | None, high: int | None
) -> npt.NDArray[np.int64]:
    lowest = nominal if low is None else low
    highest = nominal if high is None else high
    if lowest == highest:
        return np.full(count, nominal, dtype=np.int64)
    return rng.integers(lowest, highest + 1, size=count, dtype=np.int64)


def _lognormal_with_mean(
    rng: np.random.Generator, count: int, mean: float, low: int, high: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Integers from a lognormal of `SHAREGPT_LOG_SIGMA`, clipped to [low, high], whose mean
    is `mean` (the location is corrected for the clipping in a few fixed-point steps)."""
    normal = rng.standard_normal(count)
    mu = math.log(mean) - SHAREGPT_LOG_SIGMA**2 / 2
    values = np.ones(count, dtype=np.int64)
    for _ in range(8):
        raw = np.exp(mu + SHAREGPT_LOG_SIGMA * normal)
        values = np.clip(np.rint(raw), low, high).astype(np.int64)
        mu += math.log(mean / max(float(values.mean()), 1e-9))
    return values


def sharegpt_lengths(
    rng: np.random.Generator, count: int, input_mean: int, output_mean: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Prompt and output lengths with ShareGPT's skew, vLLM's filter and the given means."""
    prompt = _lognormal_with_mean(
        rng, count, input_mean, SHAREGPT_MIN_TOKENS, SHAREGPT_MAX_PROMPT_TOKENS
    )
    room = np.maximum(SHAREGPT_MAX_TOTAL_TOKENS - prompt, SHAREGPT_MIN_TOKENS)
    output = _lognormal_with_mean(rng, count, output_mean, SHAREGPT_MIN_TOKENS, room)
    return prompt, output


def _spread_bounds_given(case: Case) -> bool:
    return any(
        bound is not None
        for bound in (
            case.input_len_min, case.input_len_max, case.output_len_min, case.output_len_max
        )
    )  # fmt: skip


def case_workload(case: Case, input_len: int, output_len: int) -> tuple[Workload, str]:
    """The requests a case sends, and a one-line description for the assumptions."""
    rng = np.random.default_rng(WORKLOAD_SEED)
    if case.num_prompts is not None:
        count = case.num_prompts
    elif case.concurrency is None:
        count = OFFLINE_REQUESTS
    else:
        count = max(8 * case.concurrency, 16)
    if case.dataset.lower() == "sharegpt" and not _spread_bounds_given(case):
        prompt, output = sharegpt_lengths(rng, count, input_len, output_len)
    else:
        prompt = _lengths(rng, count, input_len, case.input_len_min, case.input_len_max)
        output = _lengths(rng, count, output_len, case.output_len_min, case.output_len_max)
    cap: int | None
    if case.request_rate_rps is None:
        arrival = np.zeros(count)
        cap = case.concurrency if case.concurrency is not None else count
        how = "at once" if case.concurrency is None else f"by {case.concurrency} clients"
    else:
        arrival = gamma_arrivals_s(rng, num_requests=count, rate_rps=case.request_rate_rps)
        cap = case.concurrency  # None: no client-side cap
        how = f"Poisson at {case.request_rate_rps:g} req/s" + (
            f", at most {cap} in flight" if cap is not None else ""
        )
    name = f"{count} requests {how}, {input_len}/{output_len} tok"
    workload = Workload(arrival, prompt, output, cap, name)
    default = case.num_prompts is None and case.request_rate_rps is None
    note = f"{count} requests {how}" + (" (default count)" if default else "")
    return workload, note


def case_setup(case: Case, profiles: ProfileSet, catalog: Catalog = DEFAULT_CATALOG) -> CaseSetup:
    """Translate a case into what the simulator runs (see the module docstring)."""
    assumptions: list[str] = []
    input_len = case.input_len or DECODE_SPEED_INPUT
    output_len = case.output_len or DECODE_SPEED_OUTPUT
    version = release_version(case.engine_version) if case.engine == "vllm" else None
    generation = vllm_engine_generation(version) if case.engine == "vllm" else "v1"
    try:
        hardware = catalog.gpu(case.gpu)
        model = case_model(case, catalog)
        quant = catalog.quant(case.weight_dtype)
        tp = case.tp
        if tp is None:
            tp = _auto_tp(case, catalog)
            assumptions.append(f"tp={tp} (smallest that leaves half the memory for KV)")
        deployment = Deployment(
            hardware,
            model,
            quant,
            case.kv_dtype,
            tp,
            gpu_memory_utilization=case.gpu_memory_utilization or 0.9,
            max_model_len=case.max_model_len,
            reference_context_tokens=input_len + max(output_len // 2, 1),
        )
        scheduler = engine_scheduler(
            case.engine, hardware, version=version, model=model, max_model_len=case.max_model_len
        )
        profile = profiles.lookup(hardware.name, case.engine).for_generation(generation)
        replica = Replica(deployment, scheduler, profile)
    except (CatalogError, ConfigError) as exc:
        raise Unmodellable(str(exc)) from None
    if case.input_len is None or case.output_len is None:
        if case.concurrency != 1:
            raise Unmodellable(
                "input_len/output_len: required for a case at concurrency "
                f"{case.concurrency or 'max'} (throughput depends on them)"
            )
        assumptions.append(
            f"lengths {input_len}/{output_len} (decode speed barely depends on them)"
        )
    if case.engine == "vllm" and generation == "v0":
        how = (
            f"chunked prefill off, {scheduler.max_num_batched_tokens} tokens per step, "
            "prompts first"
            if scheduler.prefill_first
            else f"chunked prefill {scheduler.max_num_batched_tokens} tokens per step"
        )
        assumptions.append(f"vLLM V0 engine ({case.engine_version}): {how}")
    longest = (case.input_len_max or input_len) + (case.output_len_max or output_len)
    if longest > deployment.effective_max_model_len:
        raise Unmodellable(
            f"input_len + output_len = {longest} exceeds max_model_len "
            f"{deployment.effective_max_model_len} of {model.name}"
        )
    workload, note = case_workload(case, input_len, output_len)
    if case.concurrency is None or case.num_prompts is not None or case.request_rate_rps:
        assumptions.append(note)
    if case.dataset.lower() == "sharegpt" and not _spread_bounds_given(case):
        assumptions.append(
            f"sharegpt lengths drawn lognormal (sigma {SHAREGPT_LOG_SIGMA:.2f}) around the means"
        )
    elif case.dataset and case.dataset.lower() != "random":
        assumptions.append(f"{case.dataset} lengths taken as their means")
    assumptions.extend(model.assumptions)
    return CaseSetup(
        replica, case.num_gpus // tp, workload, tuple(assumptions), engine_generation=generation
    )


def metric_value(
    metrics: ServingMetrics, metric: str, replicas: int, gpus_per_replica: int = 1
) -> float:
    """The case metric from simulated metrics (throughputs scaled to all replicas).

    `*_per_gpu` throughputs divide the system throughput by `replicas * gpus_per_replica`.
    """
    gpus = replicas * gpus_per_replica
    values = {
        "output_tok_s": metrics.output_throughput_tok_s * replicas,
        "req_s": metrics.request_throughput_rps * replicas,
        "total_tok_s": metrics.total_throughput_tok_s * replicas,
        "output_tok_s_per_gpu": metrics.output_throughput_tok_s * replicas / gpus,
        "total_tok_s_per_gpu": metrics.total_throughput_tok_s * replicas / gpus,
        "median_ttft_ms": metrics.ttft_s.p50 * 1000,
        "median_tpot_ms": metrics.tpot_s.p50 * 1000,
        "median_itl_ms": metrics.itl_s.p50 * 1000,
        "median_e2e_ms": metrics.e2e_s.p50 * 1000,
        "mean_ttft_ms": metrics.ttft_s.mean * 1000,
        "mean_tpot_ms": metrics.tpot_s.mean * 1000,
        "mean_e2e_ms": metrics.e2e_s.mean * 1000,
    }
    return values[metric]


def setup_metric_value(metrics: ServingMetrics, metric: str, setup: CaseSetup) -> float:
    """`metric_value` for a modelled case (replicas and GPUs from its setup)."""
    return metric_value(metrics, metric, setup.replicas, setup.replica.deployment.tensor_parallel)


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


def run_key(case: Case) -> Case:
    """The case with what only labels it blanked: cases with the same key are one published
    run reported as several metrics, and simulate identically."""
    return dataclasses.replace(
        case, id="", metric="output_tok_s", value=1.0, notes="", line=0, source=""
    )


def predict_case(
    case: Case,
    profiles: ProfileSet,
    catalog: Catalog = DEFAULT_CATALOG,
    *,
    runs: dict[Case, tuple[CaseSetup, ServingMetrics]] | None = None,
) -> CasePrediction:
    """Predict one case; `runs` (a dict the caller keeps) reuses the simulation of an earlier
    case of the same run (`run_key`) with the same profiles and catalog."""
    key = run_key(case)
    if runs is not None and key in runs:
        setup, metrics = runs[key]
    else:
        try:
            setup = case_setup(case, profiles, catalog)
        except Unmodellable as exc:
            return CasePrediction(case, None, str(exc))
        metrics = simulate(setup.replica, setup.workload).metrics()
        if runs is not None:
            runs[key] = (setup, metrics)
    value = setup_metric_value(metrics, case.metric, setup)
    if not math.isfinite(value):
        return CasePrediction(case, None, f"metric: {case.metric} undefined for this case")
    return CasePrediction(case, value, assumptions=setup.assumptions)


@dataclass(frozen=True)
class GroupSummary:
    """Errors of one group of cases (a split and a metric)."""

    split: str  # "train", "test" or "none" (rows without a split)
    metric: str
    cases: int
    unmodellable: int
    median_ape: float  # unmodellable cases count as infinite error
    median_ape_modelled: float  # over the modelled cases only; nan when none


@dataclass(frozen=True)
class ValidationReport:
    predictions: tuple[CasePrediction, ...]

    @property
    def median_ape(self) -> float:
        return float(np.median([p.ape for p in self.predictions]))

    @property
    def failures(self) -> tuple[CasePrediction, ...]:
        return tuple(p for p in self.predictions if p.predicted is None)

    def family_medians(self, split: str) -> dict[str, float]:
        """Median error of each `METRIC_FAMILIES` family over a split's cases (unmodellable
        ones count as infinite error); families without cases are left out."""
        medians = {}
        for family, metrics in METRIC_FAMILIES.items():
            apes = [
                p.ape
                for p in self.predictions
                if (p.case.split or "none") == split and p.case.metric in metrics
            ]
            if apes:
                medians[family] = float(np.median(apes))
        return medians

    def source_family_medians(self, split: str) -> dict[str, dict[str, float]]:
        """`family_medians` of each source's cases alone (the `source` column), per source."""
        sources = sorted(
            {p.case.source for p in self.predictions if (p.case.split or "none") == split}
        )
        return {
            source: ValidationReport(
                tuple(p for p in self.predictions if p.case.source == source)
            ).family_medians(split)
            for source in sources
        }

    def balanced_family_medians(self, split: str) -> dict[str, float]:
        """Per family, the median over sources of each source's median error.

        One large source (hundreds of rows of one model on one GPU) decides the pooled
        median of a split; this figure gives every source one vote instead.
        """
        votes: dict[str, list[float]] = {}
        for medians in self.source_family_medians(split).values():
            for family, value in medians.items():
                votes.setdefault(family, []).append(value)
        return {
            family: float(np.median(votes[family])) for family in METRIC_FAMILIES if family in votes
        }

    def unmodellable_count(self, split: str) -> int:
        return sum(1 for p in self.failures if (p.case.split or "none") == split)

    def groups(self) -> tuple[GroupSummary, ...]:
        """Median error per split and metric, in split then `METRICS` order."""
        order = {name: index for index, name in enumerate((*SPLITS, "none"))}
        grouped: dict[tuple[str, str], list[CasePrediction]] = {}
        for prediction in self.predictions:
            key = (prediction.case.split or "none", prediction.case.metric)
            grouped.setdefault(key, []).append(prediction)
        summaries = []
        for (split, metric), members in sorted(
            grouped.items(), key=lambda item: (order[item[0][0]], METRICS.index(item[0][1]))
        ):
            modelled = [p.ape for p in members if p.predicted is not None]
            summaries.append(
                GroupSummary(
                    split=split,
                    metric=metric,
                    cases=len(members),
                    unmodellable=len(members) - len(modelled),
                    median_ape=float(np.median([p.ape for p in members])),
                    median_ape_modelled=float(np.median(modelled)) if modelled else math.nan,
                )
            )
        return tuple(summaries)


def validate_cases(
    cases: Sequence[Case], profiles: ProfileSet, catalog: Catalog = DEFAULT_CATALOG
) -> ValidationReport:
    runs: dict[Case, tuple[CaseSetup, ServingMetrics]] = {}  # each published run once
    return ValidationReport(
        tuple(predict_case(case, profiles, catalog, runs=runs) for case in cases)
    )
