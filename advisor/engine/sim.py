"""Serving simulator of one vLLM replica: continuous batching and a static-batching baseline.

`simulate(replica, workload)` runs vLLM V1 scheduling (waiting and running queues,
max_num_seqs, max_num_batched_tokens, chunked prefill, paged KV in blocks, recompute
preemption of the most recently admitted request when KV runs out) on a compiled event loop
that jumps over runs of decode steps in closed form (cost grows with requests, not tokens).
`simulate_static(replica, workload, batch)` is the naive baseline: wait for `batch_size`
requests or `timeout_s`, pad to the longest prompt, run until the longest output ends.

Both return a `SimResult` (per-request times); `SimResult.metrics(slo)` summarises it.
Requests longer than max_model_len (or than the whole KV space) are rejected, as vLLM does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from advisor.engine import _simcore
from advisor.engine.catalog import GIB, HardwareSpec
from advisor.engine.perf import (
    C_COMM_S_PER_TOKEN,
    C_LIN_S_PER_TOKEN,
    CalibrationProfile,
    ConfigError,
    Deployment,
    MemoryPlan,
    StepModel,
    memory_plan,
)
from advisor.engine.prefix_cache import CacheHits, IntArray, cache_hits
from advisor.engine.results import SimResult
from advisor.engine.workload import Workload


@dataclass(frozen=True)
class SchedulerConfig:
    """vLLM scheduler settings (`--max-num-seqs`, `--max-num-batched-tokens`, ...).

    `prefill_first`: vLLM V0's scheduling without chunked prefill, where a step that admits
    waiting prompts runs them alone and the decoding sequences wait for it (V1 always mixes
    them); it needs `enable_chunked_prefill=False`.
    `enable_prefix_caching`: vLLM's automatic prefix caching (`--enable-prefix-caching`, on
    by default in V1); it skips prefill only for workloads that carry prompt block hashes
    (`Workload.prefix`), see `advisor.engine.prefix_cache`.
    `kv_offload_bytes`: host memory for KV blocks evicted from the GPUs (vLLM's
    `--kv-offloading-size`, summed over the tensor-parallel ranks; 0: no offload), a second
    LRU tier of the prefix cache; a hit there costs its load over the host link
    (`prefix_cached_tokens_on`).
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    block_size_tokens: int = 16
    prefill_first: bool = False
    enable_prefix_caching: bool = True
    kv_offload_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        offload = self.kv_offload_bytes
        if isinstance(offload, bool) or not isinstance(offload, int) or offload < 0:
            raise ConfigError(f"kv_offload_bytes: must be an integer >= 0, got {offload!r}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens: {self.max_num_batched_tokens} is below max_num_seqs "
                f"{self.max_num_seqs} (vLLM refuses this)"
            )
        if self.prefill_first and self.enable_chunked_prefill:
            raise ConfigError(
                "prefill_first: V0's prefill-first scheduling runs without chunked prefill; "
                "set enable_chunked_prefill=False"
            )

    def as_vllm_args(self) -> dict[str, object]:
        return {
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "block_size": self.block_size_tokens,
            "enable_prefix_caching": self.enable_prefix_caching,
        } | ({"kv_offloading_size": self.kv_offload_bytes / GIB} if self.kv_offload_bytes else {})


# The host link a KV block offloaded to CPU memory comes back over, per GPU, one way: the
# catalog has no PCIe figure, so this assumes PCIe Gen4 x16 at the ~25 GB/s it sustains in
# practice (Gen5 x16 about doubles it). Each tensor-parallel GPU loads its own KV shard.
HOST_LINK_BYTES_PER_S = 25e9

# vLLM 0.8.0 (2025-03-18) made the V1 engine the default; earlier releases ran V0.
V1_DEFAULT_VERSION = (0, 8)
# V1's memory-based defaults (8192 tokens / 1024 sequences on >= 70 GiB GPUs but A100) came
# with vLLM PR #17885 (0.9.0); 0.8.x used 2048 tokens / 256 sequences for the API server.
V1_LARGE_DEFAULTS_VERSION = (0, 9)
# V0 turned chunked prefill on by default for models longer than this (max_model_len).
V0_LONG_CONTEXT_TOKENS = 32768
V0_CHUNKED_PREFILL_TOKENS = 512  # V0's default budget with chunked prefill (SchedulerConfig)
V0_MIN_BATCHED_TOKENS = 2048  # without chunked prefill: max(max_model_len, 2048)


def vllm_engine_generation(version: tuple[int, int] | None) -> str:
    """ "v0" for vLLM releases before 0.8 (the V0 engine was the default), else "v1"."""
    return "v0" if version is not None and version < V1_DEFAULT_VERSION else "v1"


def vllm_default_scheduler(
    hardware: HardwareSpec,
    *,
    version: tuple[int, int] | None = None,
    max_model_len: int | None = None,
    mla: bool = False,
) -> SchedulerConfig:
    """vLLM's API-server scheduler defaults for this hardware and release (None: current).

    V1 (0.8 and later; engine/arg_utils.py get_batch_defaults): on GPUs of 70 GiB or more
    other than A100, 8192 tokens per step and 1024 sequences (0.9 and later; 0.8.x: 2048 and
    256), else 2048 and 256. V0 (before 0.8): 256 sequences; chunked prefill only for models
    longer than 32768 tokens, with a 512-token budget, and never for MLA models (0.7.x forced
    it off); without it a step holds max(max_model_len, 2048) tokens and prompts run first.
    Prefix caching is on by default in V1 and off in V0.
    `max_model_len` and `mla` matter only for V0.
    """
    if hardware.kind != "cpu" and vllm_engine_generation(version) == "v0":
        long_context = (max_model_len or 0) > V0_LONG_CONTEXT_TOKENS
        if long_context and not mla:
            return SchedulerConfig(
                max_num_seqs=256,
                max_num_batched_tokens=V0_CHUNKED_PREFILL_TOKENS,
                enable_prefix_caching=False,
            )
        return SchedulerConfig(
            max_num_seqs=256,
            max_num_batched_tokens=max(max_model_len or 0, V0_MIN_BATCHED_TOKENS),
            enable_chunked_prefill=False,
            prefill_first=True,
            enable_prefix_caching=False,
        )
    if hardware.kind == "cpu":
        return SchedulerConfig(max_num_seqs=128, max_num_batched_tokens=2048)
    gib = hardware.memory_bytes / 1024**3
    if gib >= 160:
        return SchedulerConfig(max_num_seqs=1024, max_num_batched_tokens=16384)
    large = version is None or version >= V1_LARGE_DEFAULTS_VERSION
    if gib >= 70 and "a100" not in hardware.name.lower() and large:
        return SchedulerConfig(max_num_seqs=1024, max_num_batched_tokens=8192)
    return SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=2048)


@dataclass(frozen=True)
class Replica:
    """A deployment, its scheduler and the calibration profile its step times come from."""

    deployment: Deployment
    scheduler: SchedulerConfig
    profile: CalibrationProfile

    def __post_init__(self) -> None:
        max_len = self.deployment.effective_max_model_len
        if (
            not self.scheduler.enable_chunked_prefill
            and self.scheduler.max_num_batched_tokens < max_len
        ):
            raise ConfigError(
                f"max_num_batched_tokens: {self.scheduler.max_num_batched_tokens} is below "
                f"max_model_len {max_len} with chunked prefill off (vLLM refuses this)"
            )
        if not self.memory.fits:
            raise ConfigError(
                f"max_num_batched_tokens: workspace for {self.scheduler.max_num_batched_tokens} "
                "tokens leaves no KV space: the model does not fit"
            )

    @property
    def memory(self) -> MemoryPlan:
        return memory_plan(
            self.deployment,
            max_num_batched_tokens=self.scheduler.max_num_batched_tokens,
            max_num_seqs=self.scheduler.max_num_seqs,
        )

    @property
    def step_model(self) -> StepModel:
        return StepModel(self.deployment, self.profile)

    @property
    def total_kv_blocks(self) -> int:
        return self.memory.kv_capacity_tokens // self.scheduler.block_size_tokens


@dataclass(frozen=True)
class StaticBatchConfig:
    """Naive static batching: wait for `batch_size` requests or `timeout_s`, run to the end."""

    batch_size: int = 32
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not (self.timeout_s >= 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"timeout_s: must be finite and >= 0, got {self.timeout_s}")


def host_load_tokens(
    host_tokens: IntArray,
    *,
    kv_bytes_per_token_per_gpu: float,
    prefill_s_per_token: float,
    host_link_bytes_per_s: float = HOST_LINK_BYTES_PER_S,
) -> IntArray:
    """Prefill-equivalent tokens charged for loading `host_tokens` from the host tier.

    A host-tier hit is charged as if the prefill recomputed the number of tokens whose
    compute takes as long as the load: ceil(tokens x KV bytes per token per GPU / host link /
    `prefill_s_per_token`), at most the loaded tokens (vLLM would recompute rather than wait
    longer). What this approximates: vLLM loads asynchronously while other requests keep
    running, so the load delays this request's prefill but does not occupy the GPU; here it
    costs GPU time and token budget in the steps of its prefill (busy time is over-counted
    by the load time, the request's delay is about right), and loads of concurrent requests
    do not queue on the link.
    """
    tokens = np.asarray(host_tokens, dtype=np.int64)
    load_s = tokens * kv_bytes_per_token_per_gpu / host_link_bytes_per_s
    charged = np.ceil(load_s / prefill_s_per_token - 1e-9).astype(np.int64)
    out: IntArray = np.minimum(np.maximum(charged, 0), tokens)
    return out


def host_capacity_tokens(replica: Replica) -> int:
    """KV tokens the replica's host offload memory holds (0 without offload)."""
    memory = replica.memory
    per_token = memory.kv_bytes_per_token_per_gpu * replica.deployment.tensor_parallel
    return int(replica.scheduler.kv_offload_bytes // per_token) if per_token > 0 else 0


def prefill_s_per_token(replica: Replica) -> float:
    """Marginal compute time of one more prefill token in a step (matmuls + TP communication)."""
    coef = replica.step_model.coef
    return float(coef[C_LIN_S_PER_TOKEN] + coef[C_COMM_S_PER_TOKEN])


def prefix_hits_on(replica: Replica, workload: Workload) -> CacheHits:
    """The replica's prefix-cache hits (GPU and host tiers) for the workload, in arrival order.

    No hits when the replica runs without prefix caching or the workload has no block hashes.
    The GPU tier holds the replica's whole KV space (see `advisor.engine.prefix_cache`).
    """
    n = workload.num_requests
    if not replica.scheduler.enable_prefix_caching or workload.prefix is None:
        zeros = np.zeros(n, np.int64)
        return CacheHits(zeros, zeros, zeros)
    block = replica.scheduler.block_size_tokens
    return cache_hits(
        workload.prefix,
        workload.prompt_tokens,
        capacity_tokens=replica.total_kv_blocks * block,
        kv_block_tokens=block,
        host_capacity_tokens=host_capacity_tokens(replica),
    )


def prefix_cached_tokens_on(replica: Replica, workload: Workload) -> IntArray:
    """Prompt tokens each request's prefill skips thanks to the replica's prefix cache.

    The cached tokens (`prefix_hits_on`) less the prefill-equivalent tokens charged for the
    part loaded from the host tier (`host_load_tokens`). Zeros without caching or hashes.
    """
    if not replica.scheduler.enable_prefix_caching or workload.prefix is None:
        return np.zeros(workload.num_requests, np.int64)  # the hot path without hashes
    hits = prefix_hits_on(replica, workload)
    if not hits.host_tokens.any():
        return hits.cached_tokens
    charged = host_load_tokens(
        hits.host_tokens,
        kv_bytes_per_token_per_gpu=replica.memory.kv_bytes_per_token_per_gpu,
        prefill_s_per_token=prefill_s_per_token(replica),
    )
    skipped: IntArray = hits.cached_tokens - charged
    return skipped


def simulate(replica: Replica, workload: Workload) -> SimResult:
    """Continuous batching (vLLM V1) on one replica; deterministic for a given workload.

    With prefix caching on and block hashes in the workload, prefill skips each request's
    cached prompt tokens (`prefix_cached_tokens_on`).
    """
    step = replica.step_model
    scheduler = replica.scheduler
    send, first, finish, preemptions, stats, itl = _simcore.simulate_continuous(
        workload.arrival_s,
        workload.prompt_tokens,
        workload.output_tokens,
        int(workload.max_concurrency or 0),
        step.coef,
        scheduler.max_num_seqs,
        scheduler.max_num_batched_tokens,
        scheduler.enable_chunked_prefill,
        scheduler.block_size_tokens,
        replica.total_kv_blocks,
        replica.deployment.effective_max_model_len,
        scheduler.prefill_first,
        prefix_cached_tokens_on(replica, workload),
    )
    return SimResult.from_core(
        replica=replica,
        workload=workload,
        policy="continuous",
        send_s=send,
        first_token_s=first,
        finish_s=finish,
        preemptions=preemptions,
        stats=stats,
        itl_hist=itl,
    )


def simulate_static(replica: Replica, workload: Workload, batch: StaticBatchConfig) -> SimResult:
    """Static batching baseline on one replica.

    A batch is dispatched when `batch_size` requests wait, or `timeout_s` after the oldest
    waiting request arrived, or at once if the oldest has waited that long already. Prompts
    are padded to the longest, the batch decodes until its longest output is done, and every
    request of the batch completes then (no early return). The batch is cut to what the KV
    space holds at the padded length. TTFT is the end of the batch's prefill.
    """
    step = replica.step_model
    coef = step.coef
    block = replica.scheduler.block_size_tokens
    capacity_tokens = replica.total_kv_blocks * block
    budget = replica.scheduler.max_num_batched_tokens
    max_len = replica.deployment.effective_max_model_len
    arrival, prompt, output = workload.arrival_s, workload.prompt_tokens, workload.output_tokens
    n = workload.num_requests
    cap = workload.max_concurrency or 0
    send = np.full(n, np.nan)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    stats = np.zeros(_simcore.NUM_STATS)
    itl = np.zeros(_simcore.ITL_NUM_BINS)
    rejected = (prompt + output > max_len) | (
        (prompt + output + block - 1) // block > replica.total_kv_blocks
    )
    queue = [i for i in range(n) if not rejected[i]]
    for i in np.flatnonzero(rejected):
        send[i] = arrival[i]
    t = 0.0
    head = 0
    completions: list[float] = []  # finish times of sent requests (closed-loop gating)
    while head < len(queue):
        # send times: open loop at arrival; with a cap, when the (j - cap)-th request is done
        last = head
        for j in range(head, min(len(queue), head + batch.batch_size)):
            r = queue[j]
            if math.isnan(send[r]):
                if cap and j >= cap:
                    if j - cap >= len(completions):
                        break
                    send[r] = max(arrival[r], completions[j - cap])
                else:
                    send[r] = arrival[r]
            last = j
        oldest = send[queue[head]]
        ready_at = max(t, oldest)
        full_at = send[queue[last]] if last - head + 1 == batch.batch_size else math.inf
        dispatch = max(ready_at, min(full_at, oldest + batch.timeout_s))
        members: list[int] = []
        longest_prompt = 0
        longest_output = 0
        for j in range(head, last + 1):
            r = queue[j]
            if send[r] > dispatch:
                break
            p = max(longest_prompt, int(prompt[r]))
            o = max(longest_output, int(output[r]))
            if members and (len(members) + 1) * (p + o) > capacity_tokens:
                break
            members.append(r)
            longest_prompt, longest_output = p, o
        b = float(len(members))
        t = dispatch
        # prefill in chunks of the token budget, padded prompts
        remaining = len(members) * longest_prompt
        done_tokens = 0.0
        while remaining > 0:
            chunk = min(remaining, budget)
            per_seq_before = done_tokens / b
            per_seq_chunk = chunk / b
            d = _simcore.step_time(
                coef,
                0.0,
                0.0,
                float(chunk),
                b * (per_seq_before + per_seq_chunk),
                b * per_seq_chunk * (per_seq_before + 0.5 * (per_seq_chunk + 1.0)),
                b,
            )
            t += d
            stats[_simcore.S_BUSY_S] += d
            stats[_simcore.S_STEPS] += 1
            stats[_simcore.S_BYTES] += coef[_simcore.C_BYTES_DENSE] + coef[
                _simcore.C_KV_BYTES_PER_CTX
            ] * b * (per_seq_before + per_seq_chunk)
            stats[_simcore.S_FLOPS] += coef[_simcore.C_FLOPS_PER_TOKEN] * chunk + coef[
                _simcore.C_ATTN_FLOPS_PER_PAIR
            ] * b * per_seq_chunk * (per_seq_before + 0.5 * (per_seq_chunk + 1.0))
            remaining -= chunk
            done_tokens += chunk
        prefill_end = t
        steps = longest_output - 1
        if steps > 0:
            d0, slope, host, ov = _simcore._run_shape(coef, b, b * longest_prompt)
            dt = _simcore.run_time(d0, slope, host, ov, steps)
            last_g = d0 + slope * (steps - 1)
            _simcore._itl_add(
                itl,
                d0 + host - ov * min(d0, host),
                last_g + host - ov * min(last_g, host),
                b * steps,
            )
            t += dt
            stats[_simcore.S_BUSY_S] += dt
            stats[_simcore.S_STEPS] += steps
            ctx_total = steps * (b * longest_prompt + b) + b * 0.5 * steps * (steps - 1)
            stats[_simcore.S_BYTES] += (
                steps * coef[_simcore.C_BYTES_DENSE] + coef[_simcore.C_KV_BYTES_PER_CTX] * ctx_total
            )
            stats[_simcore.S_FLOPS] += (
                coef[_simcore.C_FLOPS_PER_TOKEN] * b * steps
                + coef[_simcore.C_ATTN_FLOPS_PER_PAIR] * ctx_total
            )
        blocks = len(members) * -(-(longest_prompt + longest_output) // block)
        stats[_simcore.S_PEAK_BLOCKS] = max(stats[_simcore.S_PEAK_BLOCKS], blocks)
        stats[_simcore.S_KV_BLOCK_S] += blocks * (t - dispatch)
        for r in members:
            first[r] = prefill_end
            finish[r] = t
            completions.append(t)
        head += len(members)
    stats[_simcore.S_END_S] = t
    return SimResult.from_core(
        replica=replica,
        workload=workload,
        policy="static",
        send_s=send,
        first_token_s=first,
        finish_s=finish,
        preemptions=np.zeros(n, np.int64),
        stats=stats,
        itl_hist=itl,
    )
