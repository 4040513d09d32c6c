"""The demo's synthetic GPU telemetry, derived from the Azure trace it serves, through the engine.

No real agent runs in a demo, so its GPUs' utilization is made up, but not freely:

1. Load: the trace's own requests per minute (the Azure 2023 traces cover about an hour),
   repeated back to back over the demo's days (`TraceLoad.rate_at`). The hour that holds
   the imported trace is exactly the trace.
2. Sizing: the engine (`advisor.engine`: the deployment's model, GPU kind, tensor parallel
   size and vLLM's default scheduler, the trace's own requests as the workload, the product's
   default SLOs) finds the fewest replicas that carry the trace's per-minute load within the
   SLOs (`advisor.engine.fleet.fixed_fleet`, the planner's own sizing), in the scenario the
   demo's assessment will build (`size_for_traces`); the demo runs that many plus
   `SPARE_REPLICAS`, the usual N+1 of a production service.
3. Utilization: each minute, every GPU of the deployment reports the engine's simulated busy
   fraction (the share of time a kernel runs: what NVML calls utilization) at that minute's
   rate per replica, from the same load curve the planner uses. The noise model: 12 samples a
   minute (5 s apart), each the busy fraction x 100 plus Gaussian noise of
   `NOISE_PCT_POINTS`, rounded to whole percent like NVML and clipped to 0..100; a minute
   rollup is their mean, 95th percentile and maximum. Memory is what vLLM reserves
   (`gpu_memory_utilization` x the board's memory), power the board's idle power plus
   (max - idle) x the busy fraction (`advisor.engine.energy`), with 1% noise.
4. vLLM's metrics (engine rollups, `engine_rows`): the trace's requests and tokens per
   minute as vLLM's counters would count them, and the engine's running / waiting requests,
   KV-cache usage and latency percentiles at that minute's rate. Without them an assessment
   would have to infer the rate from GPU utilization, which saturates near 100% for a busy
   70B deployment and would flatten the trace's peaks.

So the assessment's measured utilization and the engine's simulated baseline agree up to the
noise and the clipping at 100%: the demo's gap is small because the telemetry was built
from the same model, which a real fleet's is not. Pages say the telemetry is synthetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from advisor.engine.capacity import LoadCurve
from advisor.engine.context import AssessmentContext
from advisor.engine.energy import POWER
from advisor.engine.fleet import fixed_fleet
from advisor.engine.scenario import (
    DeploymentSpec,
    EngineArgs,
    LoadShape,
    PriceEntry,
    Scenario,
    WorkloadSpec,
)
from advisor.engine.workload import Workload, load_azure_trace
from probes.models import IDLE_UTIL_PCT

SPARE_REPLICAS = 1
NOISE_PCT_POINTS = 3.0
SAMPLES_PER_MINUTE = 12
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default: it reserves this share of the board at start


@dataclass(frozen=True, eq=False)
class TraceLoad:
    """A trace's requests (arrivals from 0) and, per minute, its requests and tokens."""

    workload: Workload
    per_minute: np.ndarray  # requests in minute i after the first arrival
    prompt_per_minute: np.ndarray  # prompt tokens of those requests
    output_per_minute: np.ndarray  # output tokens of those requests

    @property
    def minutes(self) -> int:
        return int(self.per_minute.size)

    def index(self, minutes_since_start: np.ndarray) -> np.ndarray:
        """Each minute's minute of the trace, the trace repeated back to back."""
        return np.mod(minutes_since_start, self.minutes).astype(np.int64)

    def rate_at(self, minutes_since_start: np.ndarray) -> np.ndarray:
        """Requests per second at each minute (the trace repeated back to back)."""
        return np.asarray(self.per_minute[self.index(minutes_since_start)] / 60.0)


def trace_load(path: Path) -> TraceLoad:
    workload = load_azure_trace(path)
    minute = (workload.arrival_s // 60.0).astype(np.int64)
    return TraceLoad(
        workload,
        np.bincount(minute).astype(np.float64),
        np.bincount(minute, weights=workload.prompt_tokens.astype(np.float64)),
        np.bincount(minute, weights=workload.output_tokens.astype(np.float64)),
    )


@dataclass(frozen=True, eq=False)
class Sizing:
    """What the engine says today's configuration needs for the trace, and the busy curve."""

    name: str
    model: str
    hardware: str
    tensor_parallel: int
    replicas_needed: int  # fewest meeting the default SLOs at the trace's per-minute load
    replicas: int  # what the demo runs: needed + SPARE_REPLICAS
    curve: LoadCurve
    ttft_p95_s: float
    tpot_p95_s: float

    @property
    def gpus(self) -> int:
        return self.replicas * self.tensor_parallel

    def busy_fraction(self, rate_rps: np.ndarray) -> np.ndarray:
        """The engine's busy fraction of one replica at each total rate (spread evenly)."""
        return np.clip(self.per_replica(self.curve.busy_fraction, rate_rps), 0.0, 1.0)

    def per_replica(self, values: np.ndarray, rate_rps: np.ndarray) -> np.ndarray:
        """A load-proportional curve quantity (busy, KV, queue) of one replica at each rate."""
        rates, table = self.curve.grid0(values)
        return np.asarray(np.interp(rate_rps / self.replicas, rates, table))

    def latency(self, quantiles_s: np.ndarray, rate_rps: np.ndarray) -> np.ndarray:
        """A latency quantile of the curve at each rate (the lowest grid point's below it)."""
        return np.asarray(np.interp(rate_rps / self.replicas, self.curve.rates_rps, quantiles_s))


@dataclass(frozen=True, eq=False)
class DemoServing:
    """One demo deployment as the engine gets it: model, GPUs, its trace, its load."""

    name: str
    model: str
    hardware: str
    tensor_parallel: int
    load: TraceLoad
    rate_rps: np.ndarray  # per minute over the assessment's window


def size_for_traces(
    servings: list[DemoServing], *, price: PriceEntry, start_utc: str
) -> dict[str, Sizing]:
    """The engine's sizing of each deployment's configuration today (module docstring, step 2).

    The scenario is the one the demo's assessment will build from the stored data: the same
    deployments in the same order (the assessment reads them by served name), the trace's
    requests as the sample, the same per-minute load over the window, seed 0. So the
    engine's load curves here and in the assessment are the same simulations, and "today
    carries the trace within the SLOs" holds for the assessment's own numbers.
    """
    ordered = sorted(servings, key=lambda serving: serving.name)
    specs = tuple(
        DeploymentSpec(
            name=serving.name,
            model=serving.model,
            hardware=serving.hardware,
            tensor_parallel=serving.tensor_parallel,
            replicas=1,
            engine_args=EngineArgs(gpu_memory_utilization=GPU_MEMORY_UTILIZATION),
            workload=WorkloadSpec(
                serving.load.workload, LoadShape(serving.rate_rps, 60.0, start_utc)
            ),
        )
        for serving in ordered
    )
    prices = {serving.hardware: price for serving in ordered}
    ctx = AssessmentContext(Scenario(deployments=specs, prices=prices, name="demo sizing"))
    sized = {}
    for serving in ordered:
        if serving.name in ctx.problems:
            raise ValueError(f"demo deployment {serving.name}: {ctx.problems[serving.name]}")
        item = ctx.resolved[serving.name]
        curve = ctx.curve(item, item.baseline)
        needed, run = fixed_fleet(
            curve,
            item.load,
            ctx.economics(item, item.baseline),
            item.slo,
            mean_output_tokens=item.shape.mean_output_tokens,
        )
        if not run.projection.meets_slo:
            raise ValueError(
                f"demo deployment {serving.name}: no replica count of {serving.model} on "
                f"{serving.hardware} TP{serving.tensor_parallel} meets the default SLOs"
            )
        sized[serving.name] = Sizing(
            serving.name, serving.model, serving.hardware, serving.tensor_parallel, needed,
            needed + SPARE_REPLICAS, curve, run.projection.ttft_p95_s, run.projection.tpot_p95_s,
        )  # fmt: skip
    return sized


@dataclass(frozen=True)
class GpuMinutes:
    """One GPU's synthetic minutes: 12 samples each (5 s apart), and what the board reserves."""

    util_samples: np.ndarray  # (minutes, 12), whole percent
    memory_bytes: np.ndarray  # (minutes,)
    power_w: np.ndarray  # (minutes,)


def gpu_minutes(
    *,
    busy: np.ndarray,
    memory_bytes: int,
    hardware: str,
    rng: np.random.Generator,
    reserved: bool = True,
) -> GpuMinutes:
    """The noise model (module docstring, step 3) applied to a busy fraction per minute."""
    noise = rng.normal(0.0, NOISE_PCT_POINTS, (busy.size, SAMPLES_PER_MINUTE))
    samples = np.clip(np.rint(busy[:, None] * 100.0 + noise), 0.0, 100.0)
    samples[busy <= 0.0] = 0.0  # an idle board reports 0, not noise
    share = GPU_MEMORY_UTILIZATION if reserved else 0.005
    memory = (memory_bytes * share * (1.0 + rng.normal(0.0, 0.001, busy.size))).astype(np.int64)
    board = POWER[hardware]
    power = (board.idle_w + (board.max_w - board.idle_w) * samples.mean(axis=1) / 100.0) * (
        1.0 + rng.normal(0.0, 0.01, busy.size)
    )
    return GpuMinutes(samples, memory, power)


ROLLUP_COLUMNS = (
    "gpu_id", "resolution", "bucket_start", "sample_count", "util_mean_pct", "util_p95_pct",
    "util_max_pct", "mem_used_mean_bytes", "mem_used_max_bytes", "power_mean_w", "idle_minutes",
)  # fmt: skip
SAMPLE_COLUMNS = ("gpu_id", "ts", "util_pct", "mem_used_bytes", "power_w")


def rollup_rows(gpu_id: int, first_minute_s: int, data: GpuMinutes) -> Iterator[tuple[object, ...]]:
    """Minute rollups of every minute and hour rollups of every whole clock hour."""
    util = data.util_samples
    mean = util.mean(axis=1)
    p95 = np.percentile(util, 95, axis=1)
    peak = util.max(axis=1)
    idle = peak < IDLE_UTIL_PCT
    for i in range(mean.size):
        yield (
            gpu_id, "1m", float(first_minute_s + 60 * i), SAMPLES_PER_MINUTE,
            round(float(mean[i]), 2), round(float(p95[i]), 2), float(peak[i]),
            int(data.memory_bytes[i]), int(data.memory_bytes[i]), round(float(data.power_w[i]), 1),
            int(idle[i]),
        )  # fmt: skip
    offset = (-first_minute_s // 60) % 60  # hour rollups cover whole clock hours only
    for h in range(offset, mean.size - 59, 60):
        part = slice(h, h + 60)
        hour = util[part].ravel()
        yield (
            gpu_id, "1h", float(first_minute_s + 60 * h), SAMPLES_PER_MINUTE * 60,
            round(float(hour.mean()), 2), round(float(np.percentile(hour, 95)), 2),
            float(hour.max()), int(data.memory_bytes[part].mean()),
            int(data.memory_bytes[part].max()), round(float(data.power_w[part].mean()), 1),
            int(idle[part].sum()),
        )  # fmt: skip


def sample_rows(
    gpu_id: int, first_minute_s: int, data: GpuMinutes, since_s: int
) -> Iterator[tuple[object, ...]]:
    """The raw 5-s samples of the minutes from `since_s` on (what the agent would push)."""
    start = max((since_s - first_minute_s) // 60, 0)
    step_s = 60 // SAMPLES_PER_MINUTE
    for i in range(start, data.util_samples.shape[0]):
        for j in range(SAMPLES_PER_MINUTE):
            yield (
                gpu_id, float(first_minute_s + 60 * i + step_s * j),
                float(data.util_samples[i, j]), int(data.memory_bytes[i]),
                round(float(data.power_w[i]), 1),
            )  # fmt: skip


ENGINE_COLUMNS = (
    "deployment_id", "resolution", "bucket_start", "sample_count", "running_mean",
    "running_max", "waiting_mean", "waiting_max", "kv_cache_usage_mean", "kv_cache_usage_max",
    "prompt_tokens", "generation_tokens", "requests", "preemptions", "ttft_p50_s", "ttft_p90_s",
    "ttft_p99_s", "itl_p50_s", "itl_p99_s", "histograms",
)  # fmt: skip


def engine_rows(
    deployment_id: int, grid: np.ndarray, index: np.ndarray, load: TraceLoad, sizing: Sizing
) -> Iterator[tuple[object, ...]]:
    """vLLM's view of the same minutes, all servers together (module docstring, step 4).

    Counters (requests, prompt and generation tokens) are the trace's own per minute; gauges
    and latency percentiles are the engine's at that minute's rate per replica (running and
    waiting summed over replicas, KV usage their mean; a minute's maximum is its mean: the
    engine gives means). Hour rollups add the counters and average the gauges.
    """
    requests = load.per_minute[index]
    rate = requests / 60.0
    curve = sizing.curve
    running = sizing.per_replica(curve.mean_batch, rate) * sizing.replicas
    waiting = sizing.per_replica(curve.waiting, rate) * sizing.replicas
    kv = np.clip(sizing.per_replica(curve.kv_usage, rate), 0.0, 1.0)
    ttft = {q: sizing.latency(curve.ttft_q_s[:, q], rate) for q in (50, 90, 99)}
    itl = {q: sizing.latency(curve.tpot_q_s[:, q], rate) for q in (50, 99)}
    prompt = load.prompt_per_minute[index]
    output = load.output_per_minute[index]
    for i in range(grid.size):
        busy = requests[i] > 0
        yield (
            deployment_id, "1m", float(grid[i]), SAMPLES_PER_MINUTE,
            round(float(running[i]), 3), round(float(running[i]), 3),
            round(float(waiting[i]), 3), round(float(waiting[i]), 3),
            round(float(kv[i]), 4), round(float(kv[i]), 4),
            float(prompt[i]), float(output[i]), float(requests[i]), 0.0,
            _finite(ttft[50][i], busy), _finite(ttft[90][i], busy), _finite(ttft[99][i], busy),
            _finite(itl[50][i], busy), _finite(itl[99][i], busy), {},
        )  # fmt: skip
    offset = (-int(grid[0]) // 60) % 60 if grid.size else 0
    for h in range(offset, grid.size - 59, 60):
        part = slice(h, h + 60)
        yield (
            deployment_id, "1h", float(grid[h]), SAMPLES_PER_MINUTE * 60,
            round(float(running[part].mean()), 3), round(float(running[part].max()), 3),
            round(float(waiting[part].mean()), 3), round(float(waiting[part].max()), 3),
            round(float(kv[part].mean()), 4), round(float(kv[part].max()), 4),
            float(prompt[part].sum()), float(output[part].sum()), float(requests[part].sum()),
            0.0, None, None, None, None, None, {},
        )  # fmt: skip


def _finite(value: float, busy: bool) -> float | None:
    """A latency figure for a minute with requests (None for an idle minute, or unbounded)."""
    return round(float(value), 5) if busy and np.isfinite(value) else None


def minute_grid(start: datetime, end: datetime) -> np.ndarray:
    """Unix seconds of every whole minute in [start, end)."""
    first = int(start.timestamp()) // 60 * 60
    return np.arange(first, int(end.timestamp()) // 60 * 60, 60, dtype=np.int64)
