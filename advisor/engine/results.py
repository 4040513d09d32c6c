"""Simulation results: per-request times and the serving metrics `vllm bench serve` reports.

Definitions follow `vllm bench serve`: the duration runs from the first request sent to the
last response done; TTFT = first token - send; TPOT = (e2e - TTFT) / (output tokens - 1) for
requests with more than one output token; ITL = gaps between consecutive tokens (from a
log-binned histogram of step durations weighted by the sequences in each step, so its
percentiles are good to about 1%); e2e = done - send. Goodput counts requests meeting every
SLO given. MBU and MFU are over busy time (bytes and FLOPs per device / busy time / peak);
the busy fraction is busy time over the span from the first send to the end. Cost is the
replica's devices for the whole span, whether busy or not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from advisor.engine import _simcore
from advisor.engine.workload import Workload

if TYPE_CHECKING:
    from advisor.engine.sim import Replica

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Policy = Literal["continuous", "static"]
PERCENTILES = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True)
class Slo:
    """Latency objectives; None means not constrained."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None


@dataclass(frozen=True)
class Percentiles:
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: FloatArray) -> Percentiles:
        if values.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        p50, p90, p95, p99 = np.percentile(values, PERCENTILES)
        return cls(float(values.mean()), float(p50), float(p90), float(p95), float(p99))

    @classmethod
    def of_histogram(cls, edges: FloatArray, counts: FloatArray) -> Percentiles:
        total = float(counts.sum())
        if total <= 0:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        centres = np.sqrt(edges[:-1] * edges[1:])
        cumulative = np.cumsum(counts) / total
        picks = []
        for q in PERCENTILES:
            i = int(np.searchsorted(cumulative, q / 100.0))
            i = min(i, counts.size - 1)
            # interpolate inside the bin (log scale) for a smoother estimate
            below = cumulative[i - 1] if i > 0 else 0.0
            share = (q / 100.0 - below) / max(cumulative[i] - below, 1e-300)
            picks.append(float(edges[i] * (edges[i + 1] / edges[i]) ** min(max(share, 0.0), 1.0)))
        mean = float((centres * counts).sum() / total)
        return cls(mean, picks[0], picks[1], picks[2], picks[3])


@dataclass(frozen=True)
class ServingMetrics:
    """What one simulated run achieved (times in seconds, rates per second)."""

    policy: str
    num_requests: int
    completed: int
    rejected: int
    duration_s: float
    request_throughput_rps: float
    output_throughput_tok_s: float
    total_throughput_tok_s: float
    ttft_s: Percentiles
    tpot_s: Percentiles
    itl_s: Percentiles
    e2e_s: Percentiles
    busy_fraction: float
    mbu: float
    mfu: float
    kv_usage_mean: float
    kv_usage_peak: float
    kv_capacity_tokens: int
    preemptions: int
    num_steps: int
    slo: Slo
    slo_attainment: float
    goodput_rps: float
    num_devices: int
    price_usd_per_device_hour: float
    cost_usd: float
    cost_usd_per_1m_output_tokens: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SimResult:
    """Per-request times of one run (NaN for rejected requests) plus the run's counters."""

    replica: Replica
    workload: Workload
    policy: Policy
    send_s: FloatArray
    first_token_s: FloatArray
    finish_s: FloatArray
    preemptions: IntArray
    busy_s: float
    end_s: float
    bytes_per_device: float
    flops_per_device: float
    kv_block_seconds: float
    peak_kv_blocks: int
    num_steps: int
    total_preemptions: int
    itl_counts: FloatArray

    @classmethod
    def from_core(
        cls,
        *,
        replica: Replica,
        workload: Workload,
        policy: Policy,
        send_s: FloatArray,
        first_token_s: FloatArray,
        finish_s: FloatArray,
        preemptions: IntArray,
        stats: FloatArray,
        itl_hist: FloatArray,
    ) -> SimResult:
        return cls(
            replica=replica,
            workload=workload,
            policy=policy,
            send_s=send_s,
            first_token_s=first_token_s,
            finish_s=finish_s,
            preemptions=preemptions,
            busy_s=float(stats[_simcore.S_BUSY_S]),
            end_s=float(stats[_simcore.S_END_S]),
            bytes_per_device=float(stats[_simcore.S_BYTES]),
            flops_per_device=float(stats[_simcore.S_FLOPS]),
            kv_block_seconds=float(stats[_simcore.S_KV_BLOCK_S]),
            peak_kv_blocks=int(stats[_simcore.S_PEAK_BLOCKS]),
            num_steps=int(stats[_simcore.S_STEPS]),
            total_preemptions=int(stats[_simcore.S_PREEMPTIONS]),
            itl_counts=itl_hist,
        )

    @property
    def completed(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.finish_s)

    @property
    def ttft_s(self) -> FloatArray:
        return (self.first_token_s - self.send_s)[self.completed]

    @property
    def e2e_s(self) -> FloatArray:
        return (self.finish_s - self.send_s)[self.completed]

    @property
    def tpot_s(self) -> FloatArray:
        many = self.completed & (self.workload.output_tokens > 1)
        return (self.finish_s - self.first_token_s)[many] / (self.workload.output_tokens[many] - 1)

    def metrics(self, slo: Slo | None = None) -> ServingMetrics:
        objectives = slo or Slo()
        done = self.completed
        completed = int(done.sum())
        n = self.workload.num_requests
        start = float(np.nanmin(self.send_s)) if n else 0.0
        end = float(np.nanmax(self.finish_s)) if completed else start
        duration = max(end - start, 1e-12)
        out_tokens = float(self.workload.output_tokens[done].sum())
        in_tokens = float(self.workload.prompt_tokens[done].sum())
        ttft = (self.first_token_s - self.send_s)[done]
        e2e = (self.finish_s - self.send_s)[done]
        out = self.workload.output_tokens[done]
        tpot_all = np.where(out > 1, (e2e - ttft) / np.maximum(out - 1, 1), 0.0)
        meets = np.ones(completed, dtype=bool)
        if objectives.ttft_s is not None:
            meets &= ttft <= objectives.ttft_s
        if objectives.tpot_s is not None:
            meets &= tpot_all <= objectives.tpot_s
        if objectives.e2e_s is not None:
            meets &= e2e <= objectives.e2e_s
        good = int(meets.sum())
        step = self.replica.step_model
        busy = max(self.busy_s, 1e-12)
        blocks = max(self.replica.total_kv_blocks, 1)
        span = max(self.end_s - start, 1e-12)
        devices = self.replica.deployment.tensor_parallel
        price = self.replica.deployment.hardware.price_usd_per_hour
        cost = price * devices * duration / 3600.0
        return ServingMetrics(
            policy=self.policy,
            num_requests=n,
            completed=completed,
            rejected=n - completed,
            duration_s=duration,
            request_throughput_rps=completed / duration,
            output_throughput_tok_s=out_tokens / duration,
            total_throughput_tok_s=(out_tokens + in_tokens) / duration,
            ttft_s=Percentiles.of(ttft),
            tpot_s=Percentiles.of(tpot_all[out > 1]),
            itl_s=Percentiles.of_histogram(_simcore.itl_bin_edges_s(), self.itl_counts),
            e2e_s=Percentiles.of(e2e),
            busy_fraction=min(self.busy_s / span, 1.0),
            mbu=self.bytes_per_device / busy / step.peak_bandwidth_bytes_per_s,
            mfu=self.flops_per_device / busy / step.peak_flops_per_s,
            kv_usage_mean=self.kv_block_seconds / span / blocks,
            kv_usage_peak=self.peak_kv_blocks / blocks,
            kv_capacity_tokens=self.replica.memory.kv_capacity_tokens,
            preemptions=self.total_preemptions,
            num_steps=self.num_steps,
            slo=objectives,
            slo_attainment=good / completed if completed else 0.0,
            goodput_rps=good / duration,
            num_devices=devices,
            price_usd_per_device_hour=price,
            cost_usd=cost,
            cost_usd_per_1m_output_tokens=cost / out_tokens * 1e6 if out_tokens else math.inf,
        )
