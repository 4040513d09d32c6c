"""Load curves: one replica configuration simulated across request rates, for fleet sizing.

A `ReplicaConfig` is what the planner varies for a deployment (precision, KV dtype, TP,
scheduler, batching policy, speculative decoding). `load_curve(config, shape, ...)` runs the
engine's simulator (`advisor.engine.sim`; speculative configs through
`advisor.engine.specdecode`) on the deployment's own request sample:

1. saturation: a closed loop at the scheduler's concurrency limit gives the most requests
   per second one replica completes (`saturation_rps`);
2. a grid of open-loop rates (fractions of saturation, arrivals bootstrapped from the
   sample's gaps so its burstiness is kept) gives, per rate, the TTFT and TPOT quantiles,
   SLO attainment, busy fraction, KV usage and queue length.

A fleet then only needs table look-ups: the requests of a minute served by n replicas at
rate r each behave like the curve at r (a router that spreads requests evenly). The same
base sample (common random numbers) is used for every configuration and rate, so
differences between configurations are not sampling noise.

Routing: the curve's replica sees the whole sample's mix of prompts at its own rate, as
under round robin, where every replica's prefix cache sees every shared prefix. A
prefix-aware router (`DeploymentSpec.routing`) gives each replica fewer distinct prefixes
and more hits; the sizing does not count that gain (it is conservative there), the replay
(`advisor.engine.replay`) does. Host KV offload (`kv_offload_bytes`) is in the curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from advisor.engine.catalog import DEFAULT_CATALOG, HardwareSpec, ModelSpec
from advisor.engine.perf import CalibrationProfile, ConfigError, Deployment
from advisor.engine.results import SimResult
from advisor.engine.sim import (
    Replica,
    SchedulerConfig,
    StaticBatchConfig,
    simulate,
    simulate_static,
)
from advisor.engine.specdecode import SpecConfig, spec_problem
from advisor.engine.workload import Workload, resample_workload

FloatArray = npt.NDArray[np.float64]

# Grid of open-loop rates as fractions of the saturation throughput: dense near saturation,
# where latency turns up steeply. The last point is the highest rate a fleet is run at
# without counting a backlog.
RATE_FRACTIONS = (0.005, 0.05, 0.2, 0.4, 0.6, 0.75, 0.85, 0.92, 0.97)
REFINEMENTS = 2  # extra rates bisecting the interval where the SLOs stop being met
QUANTILES = np.linspace(0.0, 1.0, 101)
MAX_REJECTED = 0.001  # a configuration rejecting more requests (too long) does not meet SLOs
# The static-batching baseline runs on the engine's plain-Python simulator (about 100x slower
# per request than the compiled continuous one): it gets a shorter window.
STATIC_REQUESTS = 300
STATIC_RATE_FRACTIONS = (0.005, 0.1, 0.4, 0.7, 0.93)


TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)  # the tensor-parallel sizes the planner tries


@dataclass(frozen=True)
class ReplicaConfig:
    """One replica's configuration (everything that changes its step times or memory)."""

    model: ModelSpec
    hardware: HardwareSpec
    weight_dtype: str
    tensor_parallel: int
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool = True
    kv_cache_dtype: str = "auto"
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    batching: Literal["continuous", "static"] = "continuous"
    static_batch_size: int = 32
    static_timeout_s: float = 1.0
    spec: SpecConfig | None = None
    enable_prefix_caching: bool = True
    kv_offload_bytes: int = 0  # host memory for offloaded KV blocks (see SchedulerConfig)

    @property
    def gpus(self) -> int:
        return self.tensor_parallel

    def deployment(self) -> Deployment:
        """The engine's Deployment (raises ConfigError when it cannot be served)."""
        return Deployment(
            self.hardware,
            self.model,
            DEFAULT_CATALOG.quant(self.weight_dtype),
            kv_dtype=self.kv_cache_dtype,
            tensor_parallel=self.tensor_parallel,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
        )

    def fitting_tensor_parallel(self, max_tp: int) -> list[int]:
        """The TP sizes (of `TENSOR_PARALLEL_SIZES`, up to `max_tp`, dividing the attention
        heads) at which this replica can be served, smallest first."""
        fitting = []
        for tp in TENSOR_PARALLEL_SIZES:
            if tp > max_tp or self.model.num_heads % tp:
                continue
            try:
                replace(self, tensor_parallel=tp).deployment()
            except ConfigError:
                continue
            fitting.append(tp)
        return fitting

    def scheduler(self) -> SchedulerConfig:
        return SchedulerConfig(
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            enable_chunked_prefill=self.enable_chunked_prefill,
            block_size_tokens=self.block_size,
            enable_prefix_caching=self.enable_prefix_caching,
            kv_offload_bytes=self.kv_offload_bytes,
        )

    def label(self) -> str:
        parts = [self.weight_dtype]
        if self.kv_cache_dtype not in ("auto", "bf16", "fp16"):
            parts.append(f"kv {self.kv_cache_dtype}")
        parts.append(f"TP{self.tensor_parallel}")
        if self.batching == "static":
            parts.append(f"static batch {self.static_batch_size}")
        else:
            parts.append(f"seqs {self.max_num_seqs}, tokens {self.max_num_batched_tokens}")
            if not self.enable_chunked_prefill:
                parts.append("no chunked prefill")
            if not self.enable_prefix_caching:
                parts.append("no prefix caching")
            if self.kv_offload_bytes:
                parts.append(f"KV offload {self.kv_offload_bytes / 1024**3:g} GiB")
        if self.spec is not None:
            parts.append(f"spec {self.spec.drafter.method} k={self.spec.num_speculative_tokens}")
        return ", ".join(parts)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weight_dtype": self.weight_dtype,
            "kv_cache_dtype": self.kv_cache_dtype,
            "tensor_parallel": self.tensor_parallel,
            "batching": self.batching,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }
        if not self.enable_prefix_caching:
            out["enable_prefix_caching"] = False
        if self.kv_offload_bytes:
            out["kv_offload_bytes"] = self.kv_offload_bytes
        if self.batching == "static":
            out["static_batch_size"] = self.static_batch_size
            out["static_timeout_s"] = self.static_timeout_s
        if self.spec is not None:
            out["speculative"] = {
                "method": self.spec.drafter.method,
                "num_speculative_tokens": self.spec.num_speculative_tokens,
                "alpha": self.spec.alpha,
            }
        return out


@dataclass(frozen=True, eq=False)
class WorkloadShape:
    """A deployment's request sample resampled to a simulation window, at unit rate."""

    base: Workload  # `sim_requests` requests bootstrapped from the sample, first at 0
    mean_output_tokens: float
    mean_prompt_tokens: float

    @classmethod
    def of(cls, sample: Workload, *, num_requests: int, seed: int) -> WorkloadShape:
        rng = np.random.default_rng(seed)
        base = resample_workload(sample, rng, num_requests=num_requests, rate_rps=1.0)
        return cls(
            base,
            float(sample.output_tokens.mean()),
            float(sample.prompt_tokens.mean()),
        )

    def at_rate(self, rate_rps: float) -> Workload:
        return self.base.with_rate(rate_rps)

    def head(self, num_requests: int) -> WorkloadShape:
        return WorkloadShape(
            self.base.head(num_requests), self.mean_output_tokens, self.mean_prompt_tokens
        )

    def closed_loop(self, concurrency: int) -> Workload:
        return Workload(
            np.zeros(self.base.num_requests),
            self.base.prompt_tokens,
            self.base.output_tokens,
            concurrency,
            f"{self.base.name} closed loop x{concurrency}",
            self.base.prefix,
        )


@dataclass(frozen=True)
class SloTargets:
    ttft_p95_s: float
    tpot_p95_s: float


@dataclass(frozen=True, eq=False)
class LoadCurve:
    """A configuration's behaviour across rates; `feasible` False with `reason` if unservable.

    Arrays are per grid rate (`rates_rps`, increasing). Quantile arrays hold the 0, 1, ...,
    100th percentiles (rejected requests count as infinite).
    """

    config: ReplicaConfig
    feasible: bool
    reason: str = ""
    saturation_rps: float = 0.0
    rates_rps: FloatArray = field(default_factory=lambda: np.zeros(0))
    ttft_q_s: FloatArray = field(default_factory=lambda: np.zeros((0, QUANTILES.size)))
    tpot_q_s: FloatArray = field(default_factory=lambda: np.zeros((0, QUANTILES.size)))
    attainment: FloatArray = field(default_factory=lambda: np.zeros(0))
    busy_fraction: FloatArray = field(default_factory=lambda: np.zeros(0))
    kv_usage: FloatArray = field(default_factory=lambda: np.zeros(0))
    waiting: FloatArray = field(default_factory=lambda: np.zeros(0))
    mbu: FloatArray = field(default_factory=lambda: np.zeros(0))
    mean_batch: FloatArray = field(default_factory=lambda: np.zeros(0))
    kv_capacity_tokens: int = 0
    rejected_fraction: float = 0.0
    slo_rps: float = 0.0  # highest rate meeting the p95 targets (0: none does)

    @property
    def top_rps(self) -> float:
        return float(self.rates_rps[-1]) if self.rates_rps.size else 0.0

    def interp(self, values: FloatArray, rate_rps: float) -> float:
        """A per-request quantity (latency) at a rate; below the grid, the lowest point's."""
        return float(np.interp(rate_rps, self.rates_rps, values))

    def grid0(self, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Rates and values with (0, 0) prepended, for quantities that vanish with the load."""
        return np.concatenate(([0.0], self.rates_rps)), np.concatenate(([0.0], values))

    def interp0(self, values: FloatArray, rate_rps: float) -> float:
        """A load-proportional quantity (busy fraction, KV usage, queue, batch) at a rate."""
        rates, table = self.grid0(values)
        return float(np.interp(rate_rps, rates, table))

    def p95_at(self, rate_rps: float) -> tuple[float, float]:
        """(TTFT p95, TPOT p95) at a per-replica rate (interpolated)."""
        return (
            self.interp(self.ttft_q_s[:, 95], rate_rps),
            self.interp(self.tpot_q_s[:, 95], rate_rps),
        )


def _per_request(result: SimResult, real: Workload) -> tuple[FloatArray, FloatArray]:
    """TTFT and TPOT per request from simulated times and the real output lengths."""
    ttft = result.first_token_s - result.send_s
    out = real.output_tokens
    tpot = np.where(out > 1, (result.finish_s - result.first_token_s) / np.maximum(out - 1, 1), 0.0)
    ttft = np.where(np.isnan(ttft), math.inf, ttft)
    tpot = np.where(np.isnan(tpot), math.inf, tpot)
    return ttft, tpot


def _run(
    config: ReplicaConfig, replica: Replica, workload: Workload, seed: int
) -> tuple[SimResult, Replica]:
    if config.batching == "static":
        batch = StaticBatchConfig(config.static_batch_size, config.static_timeout_s)
        return simulate_static(replica, workload, batch), replica
    if config.spec is not None:
        problem = spec_problem(replica, workload, config.spec, np.random.default_rng(seed))
        return simulate(problem.replica, problem.workload), problem.replica
    return simulate(replica, workload), replica


def _quantiles(values: FloatArray) -> FloatArray:
    """The 0th..100th percentiles (inverted CDF: each is a value of the sample)."""
    if values.size == 0:
        return np.full(QUANTILES.size, math.inf)
    ordered = np.sort(values)
    index = np.clip(np.ceil(QUANTILES * ordered.size).astype(np.int64) - 1, 0, ordered.size - 1)
    return np.asarray(ordered[index], dtype=np.float64)


def _slo_rate(rates: FloatArray, ttft95: FloatArray, tpot95: FloatArray, slo: SloTargets) -> float:
    """Highest rate on the grid (interpolated between points) with both p95s within targets."""
    excess = np.maximum(ttft95 / slo.ttft_p95_s, tpot95 / slo.tpot_p95_s)
    ok = excess <= 1.0
    if not ok[0]:
        return 0.0
    last = int(np.argmin(ok)) - 1 if not ok.all() else rates.size - 1
    if last == rates.size - 1:
        return float(rates[-1])
    a, b = excess[last], excess[last + 1]
    if not math.isfinite(b) or b <= a:
        return float(rates[last])
    share = (1.0 - a) / (b - a)
    return float(rates[last] + share * (rates[last + 1] - rates[last]))


@dataclass(frozen=True)
class _Point:
    """One simulated rate: latency quantiles and the load-proportional figures."""

    ttft_q: FloatArray
    tpot_q: FloatArray
    attainment: float
    busy: float
    kv: float
    mean_ttft: float
    mbu: float
    batch: float

    def meets(self, slo: SloTargets) -> bool:
        return bool(self.ttft_q[95] <= slo.ttft_p95_s and self.tpot_q[95] <= slo.tpot_p95_s)


def _point(
    config: ReplicaConfig,
    replica: Replica,
    shape: WorkloadShape,
    rate: float,
    slo: SloTargets,
    seed: int,
) -> _Point:
    workload = shape.at_rate(rate)
    result, used = _run(config, replica, workload, seed)
    ttft, tpot = _per_request(result, workload)
    start = float(np.nanmin(result.send_s))
    span_s = max(result.end_s - start, 1e-12)
    finite = ttft[np.isfinite(ttft)]
    e2e = result.finish_s - result.send_s
    step = used.step_model
    return _Point(
        ttft_q=_quantiles(ttft),
        tpot_q=_quantiles(tpot[workload.output_tokens > 1]),
        attainment=float(np.mean((ttft <= slo.ttft_p95_s) & (tpot <= slo.tpot_p95_s))),
        busy=min(result.busy_s / span_s, 1.0),
        kv=result.kv_block_seconds / span_s / max(used.total_kv_blocks, 1),
        mean_ttft=float(finite.mean()) if finite.size else math.inf,
        mbu=result.bytes_per_device / max(result.busy_s, 1e-12) / step.peak_bandwidth_bytes_per_s,
        batch=float(np.nansum(e2e - (result.first_token_s - result.send_s))) / span_s,
    )


def load_curve(
    config: ReplicaConfig,
    shape: WorkloadShape,
    profile: CalibrationProfile,
    slo: SloTargets,
    *,
    seed: int = 0,
) -> LoadCurve:
    """Simulate `config` on `shape` at saturation and across the rate grid (module docstring)."""
    try:
        deployment = config.deployment()
        scheduler = config.scheduler()
        replica = Replica(deployment, scheduler, profile)
    except ConfigError as exc:
        return LoadCurve(config, False, str(exc))
    capacity = replica.memory.kv_capacity_tokens
    concurrency = config.static_batch_size if config.batching == "static" else config.max_num_seqs
    closed = shape.closed_loop(concurrency)
    saturated, _ = _run(config, replica, closed, seed)
    done = ~np.isnan(saturated.finish_s)
    if not done.any():
        return LoadCurve(
            config, False, "no request of the sample fits (max_model_len or KV space too small)"
        )
    span = float(np.nanmax(saturated.finish_s))
    saturation = float(done.sum()) / span if span > 0 else math.inf
    rejected = 1.0 - float(done.mean())
    if rejected > MAX_REJECTED:
        return LoadCurve(
            config,
            False,
            f"{rejected:.1%} of the sample's requests exceed max_model_len "
            f"{deployment.effective_max_model_len} or the KV space of {config.label()}",
            saturation_rps=saturation,
            kv_capacity_tokens=capacity,
            rejected_fraction=rejected,
        )
    fractions = STATIC_RATE_FRACTIONS if config.batching == "static" else RATE_FRACTIONS
    points: dict[float, _Point] = {}
    for fraction in fractions:
        rate = fraction * saturation
        points[rate] = _point(config, replica, shape, rate, slo, seed)
    # refine where the SLO is crossed: bisect the bracketing interval a few times
    for _ in range(REFINEMENTS if config.batching == "continuous" else 0):
        rates_now = np.array(sorted(points))
        ok = np.array([points[r].meets(slo) for r in rates_now])
        if ok.all() or not ok.any():
            break
        last = int(np.argmin(ok)) - 1
        if last < 0:
            break
        low, high = rates_now[last], rates_now[last + 1]
        if high - low < 0.01 * saturation:
            break
        middle = 0.5 * (low + high)
        points[middle] = _point(config, replica, shape, middle, slo, seed)
    rates = np.array(sorted(points))
    ordered = [points[r] for r in rates]
    ttft_q = np.array([p.ttft_q for p in ordered])
    tpot_q = np.array([p.tpot_q for p in ordered])
    attainment = np.array([p.attainment for p in ordered])
    busy = np.array([p.busy for p in ordered])
    kv = np.array([p.kv for p in ordered])
    base_ttft = ordered[0].mean_ttft
    # Little's law on the queueing part of TTFT: requests waiting for admission per replica
    waiting = np.array(
        [r * max(p.mean_ttft - base_ttft, 0.0) for r, p in zip(rates, ordered, strict=True)]
    )
    mbu = np.array([p.mbu for p in ordered])
    batch = np.array([p.batch for p in ordered])
    slo_rate = _slo_rate(rates, ttft_q[:, 95], tpot_q[:, 95], slo)
    return LoadCurve(
        config,
        True,
        "",
        saturation,
        rates,
        ttft_q,
        tpot_q,
        attainment,
        busy,
        kv,
        waiting,
        mbu,
        batch,
        capacity,
        rejected,
        slo_rate,
    )


def with_spec(config: ReplicaConfig, spec: SpecConfig | None) -> ReplicaConfig:
    return replace(config, spec=spec)
