"""Readable reference simulator: vLLM V1 continuous batching, one engine step at a time.

Slow (cost grows with tokens) and meant for tests: `advisor.engine.sim.simulate` must give the
same per-request times, preemptions, bytes and FLOPs on any workload (up to float rounding;
KV-usage integrals and ITL percentiles agree to about 1%, as the fast path integrates runs in
closed form). It follows `vllm/v1/core/sched/scheduler.py`: running requests first in
admission order (decodes take one token, a partial prefill takes what the token budget
leaves), preempting the most recently admitted request while KV blocks are short; then, only
if nothing was preempted, waiting requests in FCFS order while sequences, budget and blocks
allow. Preempted requests go to the front of the queue and recompute prompt + output so far.
With prefix caching, an admitted request starts with its cached prompt tokens computed
(`prefix_cached_tokens_on`): they hold blocks but cost no prefill compute.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from advisor.engine import _simcore
from advisor.engine.perf import step_time
from advisor.engine.results import SimResult
from advisor.engine.sim import Replica, prefix_cached_tokens_on
from advisor.engine.workload import Workload


@dataclass
class _Request:
    index: int
    prompt: int
    output: int
    state: str = "new"  # new, waiting, prefilling, decoding, done, rejected
    target: int = 0  # tokens to compute before the next sample
    kv_tokens: int = 0  # tokens whose KV is stored
    generated: int = 0
    admitted_as: int = 0


def _blocks(tokens: int, block: int) -> int:
    return -(-tokens // block)


def simulate_reference(replica: Replica, workload: Workload) -> SimResult:
    """Step-by-step twin of `simulate` (see the module docstring)."""
    coef = replica.step_model.coef
    sched = replica.scheduler
    block = sched.block_size_tokens
    total_blocks = replica.total_kv_blocks
    max_len = replica.deployment.effective_max_model_len
    cap = workload.max_concurrency or 0
    n = workload.num_requests
    cached = prefix_cached_tokens_on(replica, workload)
    reqs = [
        _Request(i, int(workload.prompt_tokens[i]), int(workload.output_tokens[i]))
        for i in range(n)
    ]
    send = np.full(n, np.nan)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    npre = np.zeros(n, np.int64)
    stats = np.zeros(_simcore.NUM_STATS)
    itl = np.zeros(_simcore.ITL_NUM_BINS)
    latency_s = float(coef[_simcore.C_API_LATENCY_S])
    ready = np.zeros(n)  # when each request reaches the scheduler
    transit: deque[_Request] = deque()  # sent, not yet at the scheduler (API latency)
    waiting: deque[_Request] = deque()
    running: list[_Request] = []
    used = 0
    t = 0.0
    nxt = 0
    in_flight = 0
    cap_free_since = 0.0
    admissions = 0
    finished = 0

    def complete(req: _Request) -> None:
        nonlocal used, finished, in_flight, cap_free_since
        used -= _blocks(req.kv_tokens, block)
        req.state = "done"
        finish[req.index] = t
        finished += 1
        if cap and in_flight == cap:
            cap_free_since = t
        in_flight -= 1

    def preempt(req: _Request) -> None:
        nonlocal used
        used -= _blocks(req.kv_tokens, block)
        req.kv_tokens = 0
        req.target = req.prompt + req.generated
        req.state = "waiting"
        npre[req.index] += 1
        stats[_simcore.S_PREEMPTIONS] += 1
        waiting.appendleft(req)

    def send_due() -> None:
        """Send requests that have arrived by now, in order, while the client cap allows."""
        nonlocal nxt, in_flight, finished
        while nxt < n and workload.arrival_s[nxt] <= t and (cap == 0 or in_flight < cap):
            req = reqs[nxt]
            nxt += 1
            send[req.index] = max(float(workload.arrival_s[req.index]), cap_free_since)
            total = req.prompt + req.output
            if total > max_len or _blocks(total, block) > total_blocks:
                req.state = "rejected"
                finished += 1
                continue
            req.state = "waiting"
            req.target = req.prompt
            ready[req.index] = send[req.index] + latency_s
            transit.append(req)
            in_flight += 1

    while finished < n:
        send_due()
        while transit and ready[transit[0].index] <= t:
            waiting.append(transit.popleft())
        if not running and not waiting:
            if transit:
                t = max(t, float(ready[transit[0].index]))
            elif nxt < n:
                t = max(t, float(workload.arrival_s[nxt]))
            else:
                break
            continue

        budget = sched.max_num_batched_tokens
        free = total_blocks - used
        preempted = False
        scheduled: list[tuple[_Request, int]] = []
        i = 0
        while i < len(running):
            req = running[i]
            tokens = 1 if req.state == "decoding" else min(req.target - req.kv_tokens, budget)
            if tokens <= 0:
                i += 1
                continue
            need = _blocks(req.kv_tokens + tokens, block) - _blocks(req.kv_tokens, block)
            scheduled_self = True
            while need > free:
                victim = running.pop()
                preempted = True
                free += _blocks(victim.kv_tokens, block)
                preempt(victim)
                if victim is req:
                    scheduled_self = False
                    break
            if not scheduled_self:
                break
            free -= need
            budget -= tokens
            scheduled.append((req, tokens))
            i += 1
        if not preempted:
            while waiting and len(running) < sched.max_num_seqs and budget > 0:
                req = waiting[0]
                start = int(cached[req.index])
                tokens = req.target - start
                if not sched.enable_chunked_prefill and tokens > budget:
                    break
                tokens = min(tokens, budget)
                need = _blocks(start + tokens, block)
                if need > free:
                    break
                waiting.popleft()
                req.kv_tokens = start
                admissions += 1
                req.admitted_as = admissions
                req.state = "prefilling"
                running.append(req)
                free -= need
                budget -= tokens
                scheduled.append((req, tokens))
        if not scheduled:
            break
        decodes = [req for req, _ in scheduled if req.state == "decoding"]
        chunks = [(req, tokens) for req, tokens in scheduled if req.state == "prefilling"]
        n_dec = len(decodes)
        dec_ctx = float(sum(req.kv_tokens + 1 for req in decodes))
        pre_tokens = sum(tokens for _, tokens in chunks)
        pre_ctx = float(sum(req.kv_tokens + tokens for req, tokens in chunks))
        pre_pairs = sum(tokens * (req.kv_tokens + 0.5 * (tokens + 1.0)) for req, tokens in chunks)
        d = step_time(coef, n_dec, dec_ctx, pre_tokens, pre_ctx, pre_pairs, len(scheduled))
        t += d
        used = total_blocks - free
        stats[_simcore.S_BUSY_S] += d
        stats[_simcore.S_STEPS] += 1
        tokens_total = float(n_dec + pre_tokens)
        stats[_simcore.S_BYTES] += (
            coef[_simcore.C_BYTES_DENSE]
            + coef[_simcore.C_BYTES_EXPERTS]
            * _simcore.routed_fraction(
                coef[_simcore.C_NUM_EXPERTS], coef[_simcore.C_TOPK], tokens_total
            )
            + coef[_simcore.C_KV_BYTES_PER_CTX] * (dec_ctx + pre_ctx)
        )
        stats[_simcore.S_FLOPS] += coef[_simcore.C_FLOPS_PER_TOKEN] * tokens_total + coef[
            _simcore.C_ATTN_FLOPS_PER_PAIR
        ] * (dec_ctx + pre_pairs)
        stats[_simcore.S_KV_BLOCK_S] += used * d
        stats[_simcore.S_PEAK_BLOCKS] = max(stats[_simcore.S_PEAK_BLOCKS], used)
        if n_dec:
            _simcore._itl_add(itl, d, d, float(n_dec))
        send_due()  # arrivals during the step come before its completions free client slots
        for req in decodes:
            req.kv_tokens += 1
            req.generated += 1
            if req.generated >= req.output:
                running.remove(req)
                complete(req)
        for req, tokens in chunks:
            req.kv_tokens += tokens
            if req.kv_tokens < req.target:
                continue
            req.generated += 1
            if math.isnan(first[req.index]):
                first[req.index] = t
            if req.generated >= req.output:
                running.remove(req)
                complete(req)
            else:
                req.state = "decoding"
    stats[_simcore.S_END_S] = t
    return SimResult.from_core(
        replica=replica,
        workload=workload,
        policy="continuous",
        send_s=send,
        first_token_s=first,
        finish_s=finish,
        preemptions=npre,
        stats=stats,
        itl_hist=itl,
    )
