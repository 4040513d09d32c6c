"""Compiled inner loop of the continuous-batching simulator (numba, cached on disk).

Private: call `advisor.engine.sim.simulate`. The readable step-by-step twin is
`advisor.engine.sim_reference`; tests check that both give the same per-request times.

Why it is fast: between admissions, completions, KV exhaustion and arrivals the batch does not
change, so a whole run of k decode steps is advanced in closed form (the step time is
piecewise linear in the step index: decode attention grows by B context tokens per step).
Per decoding sequence nothing is touched during a run: finishing steps sit in a min-heap keyed
by a global decode-step counter, KV blocks are counted through a histogram of each sequence's
context length modulo the block size (relative to that counter), so a sequence needs a new
block exactly when the counter hits its residue class.

The first call compiles (a few seconds); `cache=True` keeps the machine code in __pycache__.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

# Coefficient indices, as in advisor.engine.perf (numba reads these as compile-time constants).
C_WEIGHT_DENSE_S = 0
C_WEIGHT_EXPERTS_S = 1
C_NUM_EXPERTS = 2
C_TOPK = 3
C_LIN_S_PER_TOKEN = 4
C_DEC_ATTN_S_PER_CTX = 5
C_PRE_ATTN_MEM_S_PER_TOKEN = 6
C_PRE_ATTN_FLOP_S_PER_PAIR = 7
C_COMM_FIXED_S = 8
C_COMM_S_PER_TOKEN = 9
C_LAYER_S = 10
C_STEP_S = 11
C_SEQ_S = 12
C_OVERLAP = 13
C_BYTES_DENSE = 14
C_BYTES_EXPERTS = 15
C_KV_BYTES_PER_CTX = 16
C_FLOPS_PER_TOKEN = 17
C_ATTN_FLOPS_PER_PAIR = 18
C_API_LATENCY_S = 19

# Request states
NOT_SENT = 0
WAITING = 1
PREFILLING = 2
DECODING = 3
DONE = 4
REJECTED = 5

# Indices of the statistics vector returned by `simulate_continuous`
S_BUSY_S = 0
S_BYTES = 1
S_FLOPS = 2
S_KV_BLOCK_S = 3
S_PEAK_BLOCKS = 4
S_STEPS = 5
S_PREEMPTIONS = 6
S_END_S = 7
S_RUNS = 8
NUM_STATS = 9

# ITL histogram: log-spaced bins, 200 per decade from 1 us to 10^4 s
ITL_LOG10_MIN = -6.0
ITL_BINS_PER_DECADE = 200
ITL_NUM_BINS = 10 * ITL_BINS_PER_DECADE


def itl_bin_edges_s() -> npt.NDArray[np.float64]:
    return 10.0 ** (ITL_LOG10_MIN + np.arange(ITL_NUM_BINS + 1) / ITL_BINS_PER_DECADE)


@njit(cache=True)
def routed_fraction(num_experts: float, top_k: float, tokens: float) -> float:
    if tokens <= 0:
        return 0.0
    if num_experts <= 1.0:
        return 1.0
    return float(1.0 - (1.0 - top_k / num_experts) ** tokens)


@njit(cache=True)
def linear_time(coef: npt.NDArray[np.float64], tokens: float) -> float:
    memory = coef[C_WEIGHT_DENSE_S] + coef[C_WEIGHT_EXPERTS_S] * routed_fraction(
        coef[C_NUM_EXPERTS], coef[C_TOPK], tokens
    )
    return float(max(memory, tokens * coef[C_LIN_S_PER_TOKEN]))


@njit(cache=True)
def step_time(  # type: ignore[no-untyped-def]
    coef, n_decode, decode_ctx, prefill_tokens, prefill_ctx, prefill_pairs, n_seqs
):
    tokens = n_decode + prefill_tokens
    device = linear_time(coef, tokens) + coef[C_DEC_ATTN_S_PER_CTX] * decode_ctx
    if prefill_tokens > 0:
        device += max(
            coef[C_PRE_ATTN_MEM_S_PER_TOKEN] * prefill_ctx,
            coef[C_PRE_ATTN_FLOP_S_PER_PAIR] * prefill_pairs,
        )
    device += coef[C_COMM_FIXED_S] + coef[C_COMM_S_PER_TOKEN] * tokens + coef[C_LAYER_S]
    host = coef[C_STEP_S] + coef[C_SEQ_S] * n_seqs
    return device + host - coef[C_OVERLAP] * min(device, host)


@njit(cache=True)
def _run_shape(coef, n_decode, context_tokens):  # type: ignore[no-untyped-def]
    """A decode run: device time D0 + a j at step j, host time C, overlap ov."""
    b = float(n_decode)
    d0 = (
        linear_time(coef, b)
        + coef[C_DEC_ATTN_S_PER_CTX] * (context_tokens + b)
        + coef[C_COMM_FIXED_S]
        + coef[C_COMM_S_PER_TOKEN] * b
        + coef[C_LAYER_S]
    )
    slope = coef[C_DEC_ATTN_S_PER_CTX] * b
    host = coef[C_STEP_S] + coef[C_SEQ_S] * b
    return d0, slope, host, coef[C_OVERLAP]


@njit(cache=True)
def _sum_linear(d0, slope, j0, j1):  # type: ignore[no-untyped-def]
    """Sum of d0 + slope j for j in [j0, j1)."""
    n = float(j1 - j0)
    return n * d0 + slope * 0.5 * (float(j1) * (j1 - 1) - float(j0) * (j0 - 1))


@njit(cache=True)
def _split(d0, slope, host, k):  # type: ignore[no-untyped-def]
    """Number of steps in [0, k) whose device time is below the host time."""
    if slope <= 0.0:
        return k if d0 < host else 0
    js = math.ceil((host - d0) / slope)
    return min(max(js, 0), k)


@njit(cache=True)
def run_time(d0, slope, host, ov, k):  # type: ignore[no-untyped-def]
    """Total time of k decode steps of a run (closed form, exact for the piecewise form)."""
    js = _split(d0, slope, host, k)
    first = (1.0 - ov) * _sum_linear(d0, slope, 0, js) + host * js
    second = _sum_linear(d0, slope, js, k) + (1.0 - ov) * host * (k - js)
    return first + second


@njit(cache=True)
def _smallest_k(alpha, beta, gamma):  # type: ignore[no-untyped-def]
    """Smallest real k >= 0 with alpha k^2 + beta k >= gamma (alpha >= 0, beta > 0)."""
    if gamma <= 0.0:
        return 0.0
    return 2.0 * gamma / (beta + math.sqrt(beta * beta + 4.0 * alpha * gamma))


@njit(cache=True)
def steps_to_reach(d0, slope, host, ov, horizon_s, k_max):  # type: ignore[no-untyped-def]
    """Smallest k in [1, k_max] whose run time reaches horizon_s, or k_max if none does."""
    if run_time(d0, slope, host, ov, k_max) < horizon_s:
        return k_max
    js = _split(d0, slope, host, k_max)
    # first segment: (1-ov)(k d0 + slope k(k-1)/2) + host k
    alpha = (1.0 - ov) * slope * 0.5
    beta = (1.0 - ov) * (d0 - slope * 0.5) + host
    k = _smallest_k(alpha, beta, horizon_s)
    if k > js:
        base = run_time(d0, slope, host, ov, js)
        # second segment: base + (k-js)(d0 + (1-ov)host) + slope (k(k-1) - js(js-1))/2
        alpha = slope * 0.5
        beta = d0 + (1.0 - ov) * host - slope * 0.5
        gamma = horizon_s - base + js * (d0 + (1.0 - ov) * host) - slope * 0.5 * js * (js - 1)
        k = _smallest_k(alpha, beta, gamma)
    steps = min(max(math.ceil(k), 1), k_max)
    while steps < k_max and run_time(d0, slope, host, ov, steps) < horizon_s:
        steps += 1
    while steps > 1 and run_time(d0, slope, host, ov, steps - 1) >= horizon_s:
        steps -= 1
    return steps


@njit(cache=True)
def _itl_add(hist, first_s, last_s, weight):  # type: ignore[no-untyped-def]
    """Spread `weight` ITL samples uniformly over [first_s, last_s] in the log histogram."""
    lo = min(first_s, last_s)
    hi = max(first_s, last_s)
    if lo <= 0.0:
        lo = 1e-12
    b_lo = int((math.log10(lo) - ITL_LOG10_MIN) * ITL_BINS_PER_DECADE)
    b_hi = int((math.log10(max(hi, lo)) - ITL_LOG10_MIN) * ITL_BINS_PER_DECADE)
    b_lo = min(max(b_lo, 0), ITL_NUM_BINS - 1)
    b_hi = min(max(b_hi, 0), ITL_NUM_BINS - 1)
    if b_lo == b_hi or hi <= lo:
        hist[b_lo] += weight
        return
    span = hi - lo
    for b in range(b_lo, b_hi + 1):
        e0 = max(lo, 10.0 ** (ITL_LOG10_MIN + b / ITL_BINS_PER_DECADE))
        e1 = min(hi, 10.0 ** (ITL_LOG10_MIN + (b + 1) / ITL_BINS_PER_DECADE))
        if e1 > e0:
            hist[b] += weight * (e1 - e0) / span


@njit(cache=True)
def _heap_push(keys, vals, tags, n, key, val, tag):  # type: ignore[no-untyped-def]
    """Min-heap push; returns the new size."""
    i = n
    keys[i] = key
    vals[i] = val
    tags[i] = tag
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        tags[parent], tags[i] = tags[i], tags[parent]
        i = parent
    return n + 1


@njit(cache=True)
def _heap_pop(keys, vals, tags, n):  # type: ignore[no-untyped-def]
    """Min-heap pop of the root; returns the new size."""
    n -= 1
    keys[0] = keys[n]
    vals[0] = vals[n]
    tags[0] = tags[n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        tags[child], tags[i] = tags[i], tags[child]
        i = child
    return n


@njit(cache=True)
def _compact(keys, vals, tags, n, state, live_state_a, live_state_b, stamp, negate):  # type: ignore[no-untyped-def]
    """Drop stale entries (lazy deletions) from a full heap and re-heapify; returns the size.

    An entry is live when its request is in one of the two states and its tag (finishing heap)
    or negated key (victim heap) still equals the request's current stamp.
    """
    m = 0
    for i in range(n):
        r = vals[i]
        mark = -keys[i] if negate else tags[i]
        if (state[r] == live_state_a or state[r] == live_state_b) and mark == stamp[r]:
            keys[m] = keys[i]
            vals[m] = vals[i]
            tags[m] = tags[i]
            m += 1
    size = 0
    for i in range(m):
        size = _heap_push(keys, vals, tags, size, keys[i], vals[i], tags[i])
    return size


@njit(cache=True)
def _blocks(tokens, block):  # type: ignore[no-untyped-def]
    return (tokens + block - 1) // block


@njit(cache=True)
def _send_due(  # type: ignore[no-untyped-def]
    t, nxt, in_flight, done, tt, max_concurrency, cap_free_since, arrival_s, prompt_tokens,
    output_tokens, max_model_len, block_size, total_blocks, send_s, state, target, tq,
    ready_s, latency_s,
):  # fmt: skip
    """Send every request that has arrived by `t` while the client cap allows (in order).

    A sent request reaches the scheduler `latency_s` later (`ready_s`; the API server works
    on many requests at once, so this is a delay, not a queue); requests vLLM would refuse
    (longer than max_model_len or than the whole KV space) are rejected at once. Returns the
    updated (nxt, in_flight, done, tt).
    """
    n = arrival_s.shape[0]
    while nxt < n and arrival_s[nxt] <= t and (max_concurrency == 0 or in_flight < max_concurrency):
        r = nxt
        nxt += 1
        send_s[r] = max(arrival_s[r], cap_free_since)
        total = prompt_tokens[r] + output_tokens[r]
        if total > max_model_len or _blocks(total, block_size) > total_blocks:
            state[r] = REJECTED
            done += 1
            continue
        state[r] = WAITING
        target[r] = prompt_tokens[r]
        ready_s[r] = send_s[r] + latency_s
        tq[tt] = r
        tt += 1
        in_flight += 1
    return nxt, in_flight, done, tt


@njit(cache=True)
def _deliver(t, th, tt, wt, ready_s, tq, wq):  # type: ignore[no-untyped-def]
    """Requests the API server has passed on by `t` join the waiting queue (FIFO)."""
    while th < tt and ready_s[tq[th]] <= t:
        wq[wt] = tq[th]
        th += 1
        wt += 1
    return th, wt


@njit(cache=True)
def simulate_continuous(  # type: ignore[no-untyped-def]
    arrival_s,
    prompt_tokens,
    output_tokens,
    max_concurrency,
    coef,
    max_num_seqs,
    max_num_batched_tokens,
    chunked_prefill,
    block_size,
    total_blocks,
    max_model_len,
    prefill_first,
    cached_tokens,
):
    """Serve the workload on one replica with vLLM V1 scheduling; see module docstring.

    `prefill_first`: vLLM V0 without chunked prefill: a step that admits waiting prompts
    runs them alone (decoding sequences stall for it); otherwise decodes and prefill chunks
    share each step (V1, and V0 with chunked prefill).
    `cached_tokens[r]`: prompt tokens request r finds in the prefix cache (< its prompt; see
    `advisor.engine.prefix_cache`): each admission starts its prefill there, so only the rest
    costs compute and token budget, while its blocks (cached ones included) are allocated as
    usual and the attention of its chunks reads the cached context.

    Returns (send_s, first_token_s, finish_s, preemptions, stats, itl_hist).
    """
    n = arrival_s.shape[0]
    nan = np.nan
    send_s = np.full(n, nan)
    first_s = np.full(n, nan)
    finish_s = np.full(n, nan)
    npre = np.zeros(n, np.int64)
    state = np.zeros(n, np.int64)
    target = np.zeros(n, np.int64)  # tokens to compute before the next sample
    computed = np.zeros(n, np.int64)  # prefill progress
    generated = np.zeros(n, np.int64)
    join_g = np.zeros(n, np.int64)  # decode counter when the sequence entered decode
    join_ctx = np.zeros(n, np.int64)  # its KV tokens then
    epoch = np.zeros(n, np.int64)
    admit_no = np.zeros(n, np.int64)
    stats = np.zeros(NUM_STATS)
    itl = np.zeros(ITL_NUM_BINS)

    # finishing heap (key: decode counter at which the sequence is done)
    fk = np.empty(n + 1, np.int64)
    fv = np.empty(n + 1, np.int64)
    ft = np.empty(n + 1, np.int64)
    fn = 0
    # victim heap: max admission number first (stored negated in a min-heap)
    vk = np.empty(2 * n + 1, np.int64)
    vv = np.empty(2 * n + 1, np.int64)
    vt = np.empty(2 * n + 1, np.int64)
    vn = 0
    # waiting deque (preempted requests go back to the front)
    wq = np.empty(2 * n + 2, np.int64)
    wh = n + 1
    wt = n + 1
    # transit queue: sent, not yet at the scheduler (API server latency)
    tq = np.empty(n + 1, np.int64)
    th = 0
    tt = 0
    latency_s = coef[C_API_LATENCY_S]
    ready_s = np.zeros(n)

    hist = np.zeros(block_size, np.int64)  # decoding sequences by (ctx - G) mod block_size
    g = 0  # decode steps done so far (all decoding sequences advance together)
    n_dec = 0
    ctx_sum = 0  # sum of KV tokens of decoding sequences
    used = 0  # KV blocks in use
    pf = -1  # the one partially prefilled request, if any
    admissions = 0
    t = 0.0
    nxt = 0
    in_flight = 0
    cap_free_since = 0.0
    done = 0
    new_req = np.empty(max_num_seqs + 1, np.int64)
    new_chunk = np.empty(max_num_seqs + 1, np.int64)
    new_before = np.empty(max_num_seqs + 1, np.int64)  # context before the chunk
    new_held = np.empty(max_num_seqs + 1, np.int64)  # tokens whose blocks are already held

    while done < n:
        # 1. requests whose time has come are sent (client cap permitting)
        nxt, in_flight, done, tt = _send_due(
            t, nxt, in_flight, done, tt, max_concurrency, cap_free_since, arrival_s,
            prompt_tokens, output_tokens, max_model_len, block_size, total_blocks, send_s, state,
            target, tq, ready_s, latency_s,
        )  # fmt: skip
        th, wt = _deliver(t, th, tt, wt, ready_s, tq, wq)
        running = n_dec + (1 if pf >= 0 else 0)
        if running == 0 and wh == wt:
            if th < tt:
                t = max(t, ready_s[tq[th]])
            elif nxt < n:
                t = max(t, arrival_s[nxt])
            else:
                break
            continue

        free = total_blocks - used
        budget_left = max_num_batched_tokens - (0 if prefill_first else n_dec)
        admissible = False
        if pf < 0 and wh < wt and running < max_num_seqs and budget_left > 0:
            head = wq[wh]
            start = cached_tokens[head]
            need_tokens = target[head] - start
            if chunked_prefill or need_tokens <= budget_left:
                chunk = min(need_tokens, budget_left)
                need_dec = hist[(-g) % block_size] if n_dec > 0 and not prefill_first else 0
                admissible = _blocks(start + chunk, block_size) <= free - need_dec

        # 2. a closed-form run of decode steps when nothing else can change the batch
        if pf < 0 and not admissible and n_dec > 0:
            while fn > 0:
                r = fv[0]
                if state[r] == DECODING and ft[0] == epoch[r]:
                    break
                fn = _heap_pop(fk, fv, ft, fn)
            k_done = fk[0] - g
            # KV: full cycles of block_size steps each take n_dec blocks
            cycles = free // n_dec
            k_kv = cycles * block_size
            rem = free - cycles * n_dec
            for _j in range(block_size):
                need = hist[(-(g + k_kv)) % block_size]
                if need > rem:
                    break
                rem -= need
                k_kv += 1
            k = min(k_done, k_kv)
            if k > 0:
                d0, slope, host, ov = _run_shape(coef, n_dec, ctx_sum)
                if wh == wt and running < max_num_seqs:
                    # stop at the step boundary where the next request reaches the scheduler
                    if th < tt:
                        k = steps_to_reach(d0, slope, host, ov, ready_s[tq[th]] - t, k)
                    elif nxt < n and (max_concurrency == 0 or in_flight < max_concurrency):
                        k = steps_to_reach(d0, slope, host, ov, arrival_s[nxt] + latency_s - t, k)
                dt = run_time(d0, slope, host, ov, k)
                first_d = d0 + host - ov * min(d0, host)
                last_g = d0 + slope * (k - 1)
                last_d = last_g + host - ov * min(last_g, host)
                # blocks allocated over the run
                new_blocks = (k // block_size) * n_dec
                for j in range(k % block_size):
                    new_blocks += hist[(-(g + j)) % block_size]
                used_start = used + hist[(-g) % block_size]
                used += new_blocks
                stats[S_KV_BLOCK_S] += 0.5 * (used_start + used) * dt
                stats[S_PEAK_BLOCKS] = max(stats[S_PEAK_BLOCKS], used)
                b = float(n_dec)
                ctx_total = k * (ctx_sum + b) + b * 0.5 * k * (k - 1)
                stats[S_BYTES] += (
                    k
                    * (
                        coef[C_BYTES_DENSE]
                        + coef[C_BYTES_EXPERTS]
                        * routed_fraction(coef[C_NUM_EXPERTS], coef[C_TOPK], b)
                    )
                    + coef[C_KV_BYTES_PER_CTX] * ctx_total
                )
                stats[S_FLOPS] += (
                    coef[C_FLOPS_PER_TOKEN] * b * k + coef[C_ATTN_FLOPS_PER_PAIR] * ctx_total
                )
                stats[S_BUSY_S] += dt
                stats[S_STEPS] += k
                stats[S_RUNS] += 1
                _itl_add(itl, first_d, last_d, b * k)
                t += dt
                g += k
                ctx_sum += n_dec * k
                # arrivals during the run are sent before its completions free client slots
                nxt, in_flight, done, tt = _send_due(
                    t, nxt, in_flight, done, tt, max_concurrency, cap_free_since, arrival_s,
                    prompt_tokens, output_tokens, max_model_len, block_size, total_blocks, send_s,
                    state, target, tq, ready_s, latency_s,
                )  # fmt: skip
                # completions at the new counter (the same loop follows an explicit step
                # below: written out twice on purpose, since moving it into a shared @njit
                # helper, even with inline="always", made bench_engine's sim_requests_per_s
                # 8-25% slower in interleaved A/B runs)
                while fn > 0:
                    r = fv[0]
                    if not (state[r] == DECODING and ft[0] == epoch[r]):
                        fn = _heap_pop(fk, fv, ft, fn)
                        continue
                    if fk[0] != g:
                        break
                    fn = _heap_pop(fk, fv, ft, fn)
                    ctx = join_ctx[r] + g - join_g[r]
                    hist[(join_ctx[r] - join_g[r]) % block_size] -= 1
                    n_dec -= 1
                    ctx_sum -= ctx
                    used -= _blocks(ctx, block_size)
                    generated[r] = output_tokens[r]
                    state[r] = DONE
                    finish_s[r] = t
                    done += 1
                    if max_concurrency > 0 and in_flight == max_concurrency:
                        cap_free_since = t
                    in_flight -= 1
                continue

        # 3. one explicit step: decodes, the partial prefill, then new admissions (vLLM V1);
        # V0 without chunked prefill runs an admissible prompt alone (`admissible` above)
        decode_now = not (prefill_first and admissible)
        preempted = False
        need_dec = hist[(-g) % block_size] if n_dec > 0 and decode_now else 0
        while decode_now and n_dec > 0 and need_dec > total_blocks - used:
            victim = -1
            while vn > 0:
                cand = vv[0]
                live = (state[cand] == PREFILLING or state[cand] == DECODING) and (
                    -vk[0] == admit_no[cand]
                )
                vn = _heap_pop(vk, vv, vt, vn)
                if live:
                    victim = cand
                    break
            if victim < 0:
                break
            preempted = True
            stats[S_PREEMPTIONS] += 1
            npre[victim] += 1
            if state[victim] == DECODING:
                ctx = join_ctx[victim] + g - join_g[victim]
                hist[(join_ctx[victim] - join_g[victim]) % block_size] -= 1
                n_dec -= 1
                ctx_sum -= ctx
                used -= _blocks(ctx, block_size)
                epoch[victim] += 1
                generated[victim] += g - join_g[victim]
                target[victim] = prompt_tokens[victim] + generated[victim]
            else:
                used -= _blocks(computed[victim], block_size)
                pf = -1
            computed[victim] = 0
            state[victim] = WAITING
            wh -= 1
            wq[wh] = victim
            need_dec = hist[(-g) % block_size] if n_dec > 0 else 0
        n_step = n_dec if decode_now else 0  # decoding sequences in this step
        budget = max_num_batched_tokens - n_step
        free = total_blocks - used - need_dec
        n_new = 0
        if pf >= 0 and not preempted:
            chunk = min(target[pf] - computed[pf], budget)
            need = _blocks(computed[pf] + chunk, block_size) - _blocks(computed[pf], block_size)
            if need > free:
                # the partial prefill is the most recent admission: vLLM preempts it
                preempted = True
                stats[S_PREEMPTIONS] += 1
                npre[pf] += 1
                used -= _blocks(computed[pf], block_size)
                computed[pf] = 0
                state[pf] = WAITING
                wh -= 1
                wq[wh] = pf
                pf = -1
            else:
                new_req[0] = pf
                new_chunk[0] = chunk
                new_before[0] = computed[pf]
                new_held[0] = computed[pf]
                n_new = 1
                budget -= chunk
                free -= need
        if not preempted:
            while wh < wt and n_dec + n_new < max_num_seqs and budget > 0:
                r = wq[wh]
                start = cached_tokens[r]
                need_tokens = target[r] - start
                if not chunked_prefill and need_tokens > budget:
                    break
                chunk = min(need_tokens, budget)
                need = _blocks(start + chunk, block_size)
                if need > free:
                    break
                wh += 1
                state[r] = PREFILLING
                computed[r] = start
                admissions += 1
                admit_no[r] = admissions
                if vn == vk.shape[0]:
                    vn = _compact(vk, vv, vt, vn, state, PREFILLING, DECODING, admit_no, True)
                vn = _heap_push(vk, vv, vt, vn, -admissions, r, 0)
                new_req[n_new] = r
                new_chunk[n_new] = chunk
                new_before[n_new] = start
                new_held[n_new] = 0
                n_new += 1
                budget -= chunk
                free -= need
        pre_tokens = 0
        pre_ctx = 0.0
        pre_pairs = 0.0
        for i in range(n_new):
            c = float(new_before[i])
            m = float(new_chunk[i])
            pre_tokens += new_chunk[i]
            pre_ctx += c + m
            pre_pairs += m * (c + 0.5 * (m + 1.0))
        if n_step == 0 and pre_tokens == 0:
            # nothing can be scheduled: only possible if the KV space cannot hold a request
            break
        step_ctx = float(ctx_sum + n_dec) if n_step > 0 else 0.0
        d = step_time(
            coef,
            float(n_step),
            step_ctx,
            float(pre_tokens),
            pre_ctx,
            pre_pairs,
            float(n_step + n_new),
        )
        t += d
        stats[S_BUSY_S] += d
        stats[S_STEPS] += 1
        tokens = float(n_step + pre_tokens)
        stats[S_BYTES] += (
            coef[C_BYTES_DENSE]
            + coef[C_BYTES_EXPERTS] * routed_fraction(coef[C_NUM_EXPERTS], coef[C_TOPK], tokens)
            + coef[C_KV_BYTES_PER_CTX] * (step_ctx + pre_ctx)
        )
        stats[S_FLOPS] += coef[C_FLOPS_PER_TOKEN] * tokens + coef[C_ATTN_FLOPS_PER_PAIR] * (
            step_ctx + pre_pairs
        )
        if n_step > 0:
            _itl_add(itl, d, d, float(n_dec))
            used += need_dec
            g += 1
            ctx_sum += n_dec
        for i in range(n_new):
            r = new_req[i]
            used += _blocks(new_before[i] + new_chunk[i], block_size) - _blocks(
                new_held[i], block_size
            )
        stats[S_KV_BLOCK_S] += used * d
        stats[S_PEAK_BLOCKS] = max(stats[S_PEAK_BLOCKS], used)
        # arrivals during the step are sent before its completions free client slots
        nxt, in_flight, done, tt = _send_due(
            t, nxt, in_flight, done, tt, max_concurrency, cap_free_since, arrival_s,
            prompt_tokens, output_tokens, max_model_len, block_size, total_blocks, send_s,
            state, target, tq, ready_s, latency_s,
        )  # fmt: skip
        # completions among decoding sequences (as after a run above; kept inline for speed)
        while fn > 0:
            r = fv[0]
            if not (state[r] == DECODING and ft[0] == epoch[r]):
                fn = _heap_pop(fk, fv, ft, fn)
                continue
            if fk[0] != g:
                break
            fn = _heap_pop(fk, fv, ft, fn)
            ctx = join_ctx[r] + g - join_g[r]
            hist[(join_ctx[r] - join_g[r]) % block_size] -= 1
            n_dec -= 1
            ctx_sum -= ctx
            used -= _blocks(ctx, block_size)
            generated[r] = output_tokens[r]
            state[r] = DONE
            finish_s[r] = t
            done += 1
            if max_concurrency > 0 and in_flight == max_concurrency:
                cap_free_since = t
            in_flight -= 1
        # prefill progress: a finished prefill samples a token
        pf = -1
        for i in range(n_new):
            r = new_req[i]
            computed[r] += new_chunk[i]
            if computed[r] < target[r]:
                pf = r
                continue
            generated[r] += 1
            if math.isnan(first_s[r]):
                first_s[r] = t
            if generated[r] >= output_tokens[r]:
                used -= _blocks(computed[r], block_size)
                state[r] = DONE
                finish_s[r] = t
                done += 1
                if max_concurrency > 0 and in_flight == max_concurrency:
                    cap_free_since = t
                in_flight -= 1
                continue
            state[r] = DECODING
            join_g[r] = g
            join_ctx[r] = computed[r]
            hist[(computed[r] - g) % block_size] += 1
            n_dec += 1
            ctx_sum += computed[r]
            epoch[r] += 1
            if fn == fk.shape[0]:
                fn = _compact(fk, fv, ft, fn, state, DECODING, DECODING, epoch, False)
            fn = _heap_push(fk, fv, ft, fn, g + output_tokens[r] - generated[r], r, epoch[r])
    stats[S_END_S] = t
    return send_s, first_s, finish_s, npre, stats, itl
