"""The input of an assessment: a fleet's deployments, their workloads, prices, SLOs and options.

A `Scenario` is a frozen, JSON-round-trippable snapshot: `Scenario.from_json(s.to_json())`
gives back an equal scenario (same numbers to the last bit: floats are written with `repr`),
so an assessment stored as `to_json()` re-runs to the same plan. `digest()` is a SHA-256 of
the canonical JSON with arrays hashed by their bytes, a key for "same inputs".

Structure (JSON field names are the dataclass field names; see
`advisor/engine/examples/README.md` for a worked example):

- `deployments[]`: `DeploymentSpec` — name, model (catalog name or config.json path, or a
  name defined in `models`), model_path (what vLLM serves), hardware kind, weight_dtype
  (quantization of the current checkpoint), tensor_parallel, replicas, `engine_args` (the
  vLLM arguments the engine models), batching ("continuous" for vLLM; "static" for a naive
  server), `slo`, `workload`, `autoscaling`, measured `spec_decode` counters, speculative
  candidates (draft / EAGLE checkpoints the user has), quality overrides per scheme, and
  `gpu_kinds` (`GpuKindChoice`: the GPU kinds the planner may pin it to or must exclude).
  `routing` over the replicas ("round_robin" or "prefix_aware", see
  `advisor.engine.routing`); `engine_args.kv_offload_gib` adds host memory for KV blocks.
- `workload`: `WorkloadSpec` — `sample` (an engine `Workload`: arrival times and token
  lengths of a request sample, whose gaps carry the burstiness) and `load` (`LoadShape`:
  request rate per step, 1-minute steps, over days, for autoscaling and fleet sizing). Without
  a load shape, the sample's own arrivals are binned per minute.
- `prices`: USD per GPU-hour per hardware kind with its source; kinds not listed take the
  catalog's price, flagged as a default.
- `slo` per deployment: TTFT p95, TPOT p95 (seconds), maximum quality loss (benchmark points,
  e.g. MMLU); fields not given take product defaults and are listed in `defaulted`; and the
  redundancy rule `min_replicas`, the fewest replicas any plan keeps (absent: 2 where today
  runs 2 or more, see `advisor.engine.redundancy`; 0: no minimum). Prices and
  SLOs must lie in `advisor.engine.bounds` (the same ranges the admin and what-ifs check).
- `profiles`: calibration profiles (from the user's benchmarks) added to the built-ins.
- `models`: Hugging Face `config.json` dicts by name, for models outside the catalog.
- `options`: strategies to run, seed, hours per month, simulation window, search limits.

Malformed input raises `ScenarioError` whose `field` is the path of the bad value, e.g.
`deployments[2].slo.ttft_p95_s: must be > 0 and <= 3600 s, got 0`. Names the catalog does not
know (an unknown model or GPU) are not malformed input: the planner answers them per deployment.

`load_scenario(path)` reads a scenario file and may resolve conveniences that `from_json`
does not accept: a `sample` given as a trace file reference, and a generated load shape
(`{"diurnal": {...}}`); the result's `to_json()` holds the resolved arrays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from advisor.engine.bounds import MIN_REPLICAS, PRICE_USD_PER_GPU_HOUR, SLO_BOUNDS
from advisor.engine.catalog import KV_DTYPE_BYTES
from advisor.engine.perf import CalibrationProfile
from advisor.engine.routing import ROUTING_POLICIES, RoutingPolicy
from advisor.engine.workload import Workload

FloatArray = npt.NDArray[np.float64]

SCENARIO_VERSION = 1
HPA_METRICS = ("num_requests_waiting", "kv_cache_usage", "gpu_utilization")
SPEC_METHODS = ("ngram", "eagle", "eagle3", "draft_model", "mtp", "suffix")

SLO_FIELDS = ("ttft_p95_s", "tpot_p95_s", "max_quality_loss_points")

# Product defaults (shown as defaults wherever they are used).
DEFAULT_TTFT_P95_S = 2.0
DEFAULT_TPOT_P95_S = 0.1
DEFAULT_MAX_QUALITY_LOSS_POINTS = 1.0
DEFAULT_SCALE_DOWN_STABILIZATION_S = 300.0  # Kubernetes HPA default
DEFAULT_SCALE_UP_STABILIZATION_S = 0.0  # Kubernetes HPA default
DEFAULT_SYNC_PERIOD_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
DEFAULT_LOAD_BANDWIDTH_BYTES_PER_S = 2e9  # weights from local NVMe / a warm page cache
MAX_KV_OFFLOAD_GIB = 16384.0  # host memory per replica for KV offload (16 TiB: a typo guard)
DEFAULT_STARTUP_OVERHEAD_S = 60.0  # pod start, CUDA init, vLLM profiling and graph capture


class ScenarioError(ValueError):
    """A malformed scenario; `field` is the path of the bad value (`deployments[2].slo...`)."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        self.message = message
        super().__init__(f"{field_path}: {message}" if field_path else message)

    def at(self, prefix: str) -> ScenarioError:
        """The same error one level up: `prefix.field`."""
        if not prefix:
            return self
        if not self.field:
            return ScenarioError(prefix, self.message)
        joiner = "" if self.field.startswith("[") else "."
        return ScenarioError(f"{prefix}{joiner}{self.field}", self.message)


def fail(name: str, message: str) -> None:
    raise ScenarioError(name, message)


def check_positive(name: str, value: float, *, strict: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if strict else value < 0):
        fail(name, f"must be {'>' if strict else '>='} 0, got {value!r}")


def check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(name, f"must be an integer >= {minimum}, got {value!r}")


def _frozen_floats(values: object, name: str) -> FloatArray:
    try:
        out = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(name, f"must be a list of numbers ({exc})") from None
    if out.ndim != 1:
        fail(name, f"must be a 1-D list, got shape {out.shape}")
    out.setflags(write=False)
    return out


# --- parts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SloSpec:
    """Objectives of one deployment; `defaulted` lists the fields that took product defaults."""

    ttft_p95_s: float = DEFAULT_TTFT_P95_S
    tpot_p95_s: float = DEFAULT_TPOT_P95_S
    max_quality_loss_points: float = DEFAULT_MAX_QUALITY_LOSS_POINTS
    defaulted: tuple[str, ...] = ()
    # The redundancy rule: the fewest replicas a plan keeps; None: the product default.
    min_replicas: int | None = None

    def __post_init__(self) -> None:
        for name, bound in SLO_BOUNDS.items():
            problem = bound.problem(getattr(self, name))
            if problem:
                fail(name, problem)
        if self.min_replicas is not None:
            problem = MIN_REPLICAS.problem(self.min_replicas)
            if problem or not isinstance(self.min_replicas, int):
                fail("min_replicas", problem or f"must be an integer, got {self.min_replicas!r}")
        known = {"ttft_p95_s", "tpot_p95_s", "max_quality_loss_points"}
        for name in self.defaulted:
            if name not in known:
                fail("defaulted", f"unknown field {name!r}; known: {sorted(known)}")


@dataclass(frozen=True)
class SpeculativeSpec:
    """A `--speculative-config`: method, draft length, and the draft checkpoint if one is needed."""

    method: str
    num_speculative_tokens: int
    model: str | None = None
    prompt_lookup_max: int | None = None

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            fail("method", f"unknown {self.method!r}; known: {list(SPEC_METHODS)}")
        check_int("num_speculative_tokens", self.num_speculative_tokens, 1)
        if self.prompt_lookup_max is not None:
            check_int("prompt_lookup_max", self.prompt_lookup_max, 1)
        if self.method in ("eagle", "eagle3", "draft_model") and not self.model:
            fail("model", f"method {self.method!r} needs the draft/EAGLE checkpoint path")


@dataclass(frozen=True)
class SpecCandidate:
    """A speculative method the user can deploy (e.g. an EAGLE head they have) for this model."""

    method: str
    model: str | None = None

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            fail("method", f"unknown {self.method!r}; known: {list(SPEC_METHODS)}")
        if self.method in ("eagle", "eagle3", "draft_model") and not self.model:
            fail("model", f"method {self.method!r} needs the draft/EAGLE checkpoint path")


@dataclass(frozen=True)
class SpecDecodeCounters:
    """Measured `vllm:spec_decode_*` counter increases over a window, with the config they ran."""

    method: str
    num_speculative_tokens: int
    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            fail("method", f"unknown {self.method!r}; known: {list(SPEC_METHODS)}")
        check_int("num_speculative_tokens", self.num_speculative_tokens, 1)
        check_int("num_drafts", self.num_drafts, 1)
        check_int("num_draft_tokens", self.num_draft_tokens, 1)
        check_int("num_accepted_tokens", self.num_accepted_tokens, 0)
        if self.num_accepted_tokens > self.num_draft_tokens:
            fail("num_accepted_tokens", "exceeds num_draft_tokens")

    @property
    def acceptance_rate(self) -> float:
        """accepted / drafted tokens (vLLM's spec-decode acceptance rate)."""
        return self.num_accepted_tokens / self.num_draft_tokens


@dataclass(frozen=True)
class EngineArgs:
    """The vLLM engine arguments the engine models (None: vLLM's default for the hardware)."""

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool = True
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    kv_cache_dtype: str = "auto"
    block_size: int = 16
    speculative_config: SpeculativeSpec | None = None
    enable_prefix_caching: bool = True  # vLLM V1's default
    kv_offload_gib: float = 0.0  # `--kv-offloading-size`: host memory for evicted KV blocks

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, 1)
        if not isinstance(self.enable_chunked_prefill, bool):
            fail(
                "enable_chunked_prefill",
                f"must be true or false, got {self.enable_chunked_prefill!r}",
            )
        if not isinstance(self.enable_prefix_caching, bool):
            fail(
                "enable_prefix_caching",
                f"must be true or false, got {self.enable_prefix_caching!r}",
            )
        offload = self.kv_offload_gib
        if (
            isinstance(offload, bool)
            or not isinstance(offload, int | float)
            or not 0.0 <= offload <= MAX_KV_OFFLOAD_GIB
        ):
            fail("kv_offload_gib", f"must be in [0, {MAX_KV_OFFLOAD_GIB}] GiB, got {offload!r}")
        util = self.gpu_memory_utilization
        if isinstance(util, bool) or not isinstance(util, int | float) or not 0.0 < util <= 1.0:
            fail("gpu_memory_utilization", f"must be in (0, 1], got {util!r}")
        if self.kv_cache_dtype not in KV_DTYPE_BYTES:
            fail("kv_cache_dtype", f"unknown {self.kv_cache_dtype!r}")
        check_int("block_size", self.block_size, 1)


@dataclass(frozen=True, eq=False)
class LoadShape:
    """Mean request rate per step (default 1-minute steps) from `start_utc` on, over days."""

    rate_rps: FloatArray
    step_s: float = 60.0
    start_utc: str = ""

    def __post_init__(self) -> None:
        rates = _frozen_floats(self.rate_rps, "rate_rps")
        if rates.size == 0:
            fail("rate_rps", "must hold at least one step")
        bad = np.flatnonzero(~np.isfinite(rates) | (rates < 0))
        if bad.size:
            fail(f"rate_rps[{int(bad[0])}]", f"must be finite and >= 0, got {rates[bad[0]]!r}")
        check_positive("step_s", self.step_s)
        if self.start_utc:
            try:
                datetime.fromisoformat(self.start_utc.replace("Z", "+00:00"))
            except ValueError:
                fail("start_utc", f"not an ISO 8601 timestamp: {self.start_utc!r}")
        object.__setattr__(self, "rate_rps", rates)

    @property
    def duration_s(self) -> float:
        return float(self.rate_rps.size * self.step_s)

    @property
    def mean_rps(self) -> float:
        return float(self.rate_rps.mean())

    @property
    def peak_rps(self) -> float:
        return float(self.rate_rps.max())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoadShape):
            return NotImplemented
        return (
            self.step_s == other.step_s
            and self.start_utc == other.start_utc
            and np.array_equal(self.rate_rps, other.rate_rps)
        )

    __hash__ = None  # type: ignore[assignment]


def _same_prefix(a: Workload, b: Workload) -> bool:
    if a.prefix is None or b.prefix is None:
        return a.prefix is b.prefix
    return (
        a.prefix.block_tokens == b.prefix.block_tokens
        and np.array_equal(a.prefix.hashes, b.prefix.hashes)
        and np.array_equal(a.prefix.offsets, b.prefix.offsets)
    )


@dataclass(frozen=True, eq=False)
class WorkloadSpec:
    """A deployment's traffic: a request sample (lengths, burstiness) and its load over time."""

    sample: Workload
    load: LoadShape | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.sample, Workload):
            fail("sample", "must be a Workload")
        if self.sample.num_requests < 2:
            fail("sample", f"needs at least 2 requests, got {self.sample.num_requests}")
        if self.sample.max_concurrency is not None:
            fail("sample", "must be open loop (max_concurrency None): it is production traffic")
        if self.load is None and self.sample.duration_s < 60.0:
            fail("load", "required when the sample spans less than a minute")

    @property
    def load_shape(self) -> LoadShape:
        """The given load, or the sample's arrivals binned per minute."""
        if self.load is not None:
            return self.load
        arrival = self.sample.arrival_s - self.sample.arrival_s[0]
        steps = int(arrival[-1] // 60.0) + 1
        counts = np.bincount((arrival // 60.0).astype(np.int64), minlength=steps)
        return LoadShape(counts[:steps] / 60.0, 60.0, "")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkloadSpec):
            return NotImplemented
        a, b = self.sample, other.sample
        return (
            self.source == other.source
            and self.load == other.load
            and a.name == b.name
            and np.array_equal(a.arrival_s, b.arrival_s)
            and np.array_equal(a.prompt_tokens, b.prompt_tokens)
            and np.array_equal(a.output_tokens, b.output_tokens)
            and _same_prefix(a, b)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class AutoscalingSpec:
    """Replica bounds, today's autoscaler (if any) and what a cold start costs.

    `enabled` describes the baseline (does this deployment autoscale today, on `metric` at
    `target`); the elastic-scaling strategy recommends its own metric and target. Cold start
    is `cold_start_s` when measured, else startup overhead + weights / load bandwidth.
    """

    enabled: bool = False
    min_replicas: int = 1
    max_replicas: int | None = None
    metric: str = "num_requests_waiting"
    target: float | None = None
    scale_up_stabilization_s: float = DEFAULT_SCALE_UP_STABILIZATION_S
    scale_down_stabilization_s: float = DEFAULT_SCALE_DOWN_STABILIZATION_S
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S
    cold_start_s: float | None = None
    load_bandwidth_bytes_per_s: float = DEFAULT_LOAD_BANDWIDTH_BYTES_PER_S
    startup_overhead_s: float = DEFAULT_STARTUP_OVERHEAD_S
    defaulted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            fail("enabled", f"must be true or false, got {self.enabled!r}")
        check_int("min_replicas", self.min_replicas, 0)
        if self.max_replicas is not None:
            check_int("max_replicas", self.max_replicas, max(self.min_replicas, 1))
        if self.metric not in HPA_METRICS:
            fail("metric", f"unknown {self.metric!r}; known: {list(HPA_METRICS)}")
        if self.target is not None:
            check_positive("target", self.target)
        if self.enabled and self.target is None:
            fail("target", "required when enabled (the current autoscaler's target value)")
        check_positive("scale_up_stabilization_s", self.scale_up_stabilization_s, strict=False)
        check_positive("scale_down_stabilization_s", self.scale_down_stabilization_s, strict=False)
        check_positive("sync_period_s", self.sync_period_s)
        if self.cold_start_s is not None:
            check_positive("cold_start_s", self.cold_start_s, strict=False)
        check_positive("load_bandwidth_bytes_per_s", self.load_bandwidth_bytes_per_s)
        check_positive("startup_overhead_s", self.startup_overhead_s, strict=False)


AUTOSCALING_DEFAULTS = (
    "min_replicas",
    "scale_up_stabilization_s",
    "scale_down_stabilization_s",
    "sync_period_s",
    "load_bandwidth_bytes_per_s",
    "startup_overhead_s",
)


def default_autoscaling() -> AutoscalingSpec:
    """No autoscaler today, every bound and window at its default (flagged as such)."""
    return AutoscalingSpec(defaulted=AUTOSCALING_DEFAULTS)


@dataclass(frozen=True)
class QualityOverride:
    """The user's own measured quality change for a scheme (points, negative = worse)."""

    delta_points: float
    source: str

    def __post_init__(self) -> None:
        if not (isinstance(self.delta_points, int | float) and math.isfinite(self.delta_points)):
            fail("delta_points", f"must be a finite number, got {self.delta_points!r}")
        if not self.source:
            fail("source", "say where the figure comes from")


@dataclass(frozen=True)
class GpuKindChoice:
    """Which GPU kinds the planner may move a deployment to (the hardware lever).

    `pin`: only these kinds (empty: any kind the price sheet offers); `exclude`: never these.
    Today's kind stays allowed unless `exclude` names it: then the plan must move the
    deployment to an allowed kind, or it reports that no configuration is allowed. Names are
    catalog GPU names; one the catalog does not know is answered by the planner, not here.
    """

    pin: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("pin", "exclude"):
            values = getattr(self, key)
            if isinstance(values, str) or not isinstance(values, tuple | list):
                fail(key, f"must be a list of GPU kinds, got {values!r}")
            seen: set[str] = set()
            for index, name in enumerate(values):
                if not isinstance(name, str) or not name.strip():
                    fail(f"{key}[{index}]", f"must be a GPU kind name, got {name!r}")
                if name in seen:
                    fail(f"{key}[{index}]", f"{name!r} given twice")
                seen.add(name)
            object.__setattr__(self, key, tuple(values))
        for index, name in enumerate(self.exclude):
            if name in self.pin:
                fail(f"exclude[{index}]", f"{name!r} is also pinned: pin or exclude it, not both")

    @property
    def restricted(self) -> bool:
        return bool(self.pin or self.exclude)


@dataclass(frozen=True, eq=False)
class DeploymentSpec:
    """One served model: what runs today, on what, for which traffic and objectives."""

    name: str
    model: str
    hardware: str
    workload: WorkloadSpec
    model_path: str = ""
    weight_dtype: str = "bf16"
    tensor_parallel: int = 1
    replicas: int = 1
    engine_args: EngineArgs = field(default_factory=EngineArgs)
    batching: Literal["continuous", "static"] = "continuous"
    static_batch_size: int = 32
    static_timeout_s: float = 1.0
    slo: SloSpec = field(default_factory=SloSpec)
    autoscaling: AutoscalingSpec = field(default_factory=lambda: default_autoscaling())
    spec_decode: SpecDecodeCounters | None = None
    speculative_candidates: tuple[SpecCandidate, ...] = ()
    quality_overrides: Mapping[str, QualityOverride] = field(default_factory=dict)
    gpu_kinds: GpuKindChoice = field(default_factory=GpuKindChoice)
    routing: RoutingPolicy = "round_robin"  # how requests spread over the replicas

    def __post_init__(self) -> None:
        for name in ("name", "model", "hardware", "weight_dtype"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                fail(name, f"must be a non-empty string, got {value!r}")
        check_int("tensor_parallel", self.tensor_parallel, 1)
        check_int("replicas", self.replicas, 0)
        if self.batching not in ("continuous", "static"):
            fail("batching", f"must be 'continuous' or 'static', got {self.batching!r}")
        check_int("static_batch_size", self.static_batch_size, 1)
        check_positive("static_timeout_s", self.static_timeout_s, strict=False)
        if not isinstance(self.gpu_kinds, GpuKindChoice):
            fail("gpu_kinds", "must be a GpuKindChoice")
        if self.routing not in ROUTING_POLICIES:
            fail("routing", f"must be one of {list(ROUTING_POLICIES)}, got {self.routing!r}")
        object.__setattr__(self, "quality_overrides", dict(self.quality_overrides))

    @property
    def gpus(self) -> int:
        """GPUs provisioned today (replicas x tensor parallel)."""
        return self.replicas * self.tensor_parallel

    @property
    def served_path(self) -> str:
        """The model path vLLM serves (defaults to the model name)."""
        return self.model_path or self.model

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeploymentSpec):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class PriceEntry:
    """USD per GPU-hour for one hardware kind, with where the figure comes from.

    A row the user gave (not `defaulted`) also says the kind can be had: the planner may move
    deployments onto it (`advisor.engine.hardware`), using at most `max_gpus` of it across
    the fleet at once (None: no limit). `usd_per_gpu_hour` is the on-demand price, the one
    every cost uses; the reserved and spot prices are kept with the sheet and shown, not
    used to price a plan.
    """

    usd_per_gpu_hour: float
    source: str
    defaulted: bool = False
    max_gpus: int | None = None
    reserved_usd_per_gpu_hour: float | None = None
    spot_usd_per_gpu_hour: float | None = None

    def __post_init__(self) -> None:
        problem = PRICE_USD_PER_GPU_HOUR.problem(self.usd_per_gpu_hour)
        if problem:
            fail("usd_per_gpu_hour", problem)
        if not isinstance(self.source, str) or not self.source.strip():
            fail("source", "say where the price comes from (e.g. 'price sheet 2026-01')")
        if self.max_gpus is not None:
            check_int("max_gpus", self.max_gpus, 1)
        for name in ("reserved_usd_per_gpu_hour", "spot_usd_per_gpu_hour"):
            value = getattr(self, name)
            if value is not None:
                problem = PRICE_USD_PER_GPU_HOUR.problem(value)
                if problem:
                    fail(name, problem)


@dataclass(frozen=True)
class PowerEntry:
    """Board power of one hardware kind at idle and at full load (W), for energy per token."""

    idle_w: float
    max_w: float
    source: str

    def __post_init__(self) -> None:
        check_positive("idle_w", self.idle_w, strict=False)
        check_positive("max_w", self.max_w)
        if self.idle_w > self.max_w:
            fail("idle_w", f"exceeds max_w ({self.idle_w} > {self.max_w})")


@dataclass(frozen=True)
class Options:
    """How the assessment runs.

    `strategies`: which to run (None: every registered strategy, resolved on construction).
    `sim_requests`: requests per simulated load point (more is slower and less noisy).
    `hardware_moves`: whether the planner may move deployments to other GPU kinds the price
    sheet offers (the hardware lever; per deployment `DeploymentSpec.gpu_kinds` narrows it).
    """

    strategies: tuple[str, ...] | None = None
    seed: int = 0
    hours_per_month: float = 730.0
    sim_requests: int = 2000
    max_tensor_parallel: int = 8
    engine: str = "vllm"
    hardware_moves: bool = True

    def __post_init__(self) -> None:
        from advisor.engine.strategies.registry import names

        known = names()
        chosen = known if self.strategies is None else tuple(self.strategies)
        seen = set()
        for index, name in enumerate(chosen):
            if name not in known:
                fail(f"strategies[{index}]", f"unknown {name!r}; known: {list(known)}")
            if name in seen:
                fail(f"strategies[{index}]", f"{name!r} given twice")
            seen.add(name)
        object.__setattr__(self, "strategies", chosen)
        check_int("seed", self.seed, 0)
        check_positive("hours_per_month", self.hours_per_month)
        check_int("sim_requests", self.sim_requests, 200)
        check_int("max_tensor_parallel", self.max_tensor_parallel, 1)
        if not isinstance(self.hardware_moves, bool):
            fail("hardware_moves", f"must be true or false, got {self.hardware_moves!r}")

    @property
    def strategy_names(self) -> tuple[str, ...]:
        return self.strategies or ()


@dataclass(frozen=True, eq=False)
class Scenario:
    """An assessment's whole input (see the module docstring)."""

    deployments: tuple[DeploymentSpec, ...]
    prices: Mapping[str, PriceEntry] = field(default_factory=dict)
    power: Mapping[str, PowerEntry] = field(default_factory=dict)
    profiles: tuple[CalibrationProfile, ...] = ()
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    name: str = "scenario"

    def __post_init__(self) -> None:
        deployments = tuple(self.deployments)
        if not deployments:
            fail("deployments", "needs at least one deployment")
        seen: dict[str, int] = {}
        for index, deployment in enumerate(deployments):
            if not isinstance(deployment, DeploymentSpec):
                fail(f"deployments[{index}]", "must be a DeploymentSpec")
            if deployment.name in seen:
                fail(
                    f"deployments[{index}].name",
                    f"{deployment.name!r} already names deployments[{seen[deployment.name]}]",
                )
            seen[deployment.name] = index
        object.__setattr__(self, "deployments", deployments)
        object.__setattr__(self, "prices", dict(self.prices))
        object.__setattr__(self, "power", dict(self.power))
        object.__setattr__(self, "profiles", tuple(self.profiles))
        object.__setattr__(self, "models", {k: dict(v) for k, v in self.models.items()})

    def deployment(self, name: str) -> DeploymentSpec:
        for deployment in self.deployments:
            if deployment.name == name:
                return deployment
        raise KeyError(name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scenario):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        from advisor.engine.scenario_json import scenario_to_dict

        return scenario_to_dict(self)

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys); floats exact (repr)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    def digest(self) -> str:
        """SHA-256 identifying the inputs (arrays hashed by their bytes; see scenario_json)."""
        from advisor.engine.scenario_json import scenario_digest

        return scenario_digest(self)

    @classmethod
    def from_dict(cls, data: object) -> Scenario:
        from advisor.engine.scenario_json import scenario_from_dict

        return scenario_from_dict(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Scenario:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError("", f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def with_options(self, **changes: Any) -> Scenario:
        return replace(self, options=replace(self.options, **changes))


def diurnal_load(
    rng: np.random.Generator | None,
    *,
    days: float,
    mean_rps: float,
    peak_to_trough: float = 1.0,
    peak_hour_utc: float = 15.0,
    weekend_factor: float = 1.0,
    start_weekday: int = 0,
    step_s: float = 60.0,
    start_utc: str = "",
    active_hours_utc: tuple[float, float] | None = None,
) -> LoadShape:
    """A daily cosine load with an optional weekend dip; Poisson counts per step when rng given.

    `peak_to_trough` is the ratio of the daily maximum to the minimum (1 = flat);
    `weekend_factor` scales Saturdays and Sundays (start_weekday 0 = the first day is a Monday).
    The weekday mean before the weekend scaling is `mean_rps`. `active_hours_utc` (start,
    end) keeps the load only in that daily window (e.g. (0, 6) for a nightly batch job) and
    zero outside it.
    """
    check_positive("days", days)
    check_positive("mean_rps", mean_rps, strict=False)
    if not peak_to_trough >= 1.0:
        fail("peak_to_trough", f"must be >= 1, got {peak_to_trough}")
    check_positive("weekend_factor", weekend_factor, strict=False)
    check_int("start_weekday", start_weekday, 0)
    steps = round(days * 86400.0 / step_s)
    t_s = (np.arange(steps) + 0.5) * step_s
    hour = (t_s / 3600.0) % 24.0
    amplitude = (peak_to_trough - 1.0) / (peak_to_trough + 1.0)
    rate = mean_rps * (1.0 + amplitude * np.cos(2.0 * np.pi * (hour - peak_hour_utc) / 24.0))
    weekday = (start_weekday + (t_s // 86400.0).astype(np.int64)) % 7
    rate = np.where(weekday >= 5, rate * weekend_factor, rate)
    if active_hours_utc is not None:
        start, end = active_hours_utc
        inside = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
        rate = np.where(inside, rate, 0.0)
    if rng is not None:
        rate = rng.poisson(rate * step_s) / step_s
    return LoadShape(rate.astype(np.float64), step_s, start_utc)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file (see `advisor.engine.scenario_json.load_scenario`)."""
    from advisor.engine.scenario_json import load_scenario as load

    return load(path)
