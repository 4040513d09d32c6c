"""Today's configuration replaying a deployment's whole request sample, as it arrived.

The load curves use a bootstrapped window of the sample; this runs every request of the
sample (e.g. a 1M-request trace) through the simulator once, at its recorded arrival times,
on one replica's share (round robin over today's replicas). Its latencies and busy fraction
are what the assessment compares with the fleet's measured telemetry before trusting the
projections.
"""

from __future__ import annotations

import math

import numpy as np

from advisor.engine.capacity import _per_request, _run
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.perf import ConfigError
from advisor.engine.sim import Replica

STATIC_REPLAY_REQUESTS = 2_000  # the static-batching simulator is plain Python (slow)


def replay(ctx: AssessmentContext, item: Resolved) -> dict[str, object]:
    config = item.baseline
    sample = item.spec.workload.sample
    replicas = max(item.spec.replicas, 1)
    share = sample.select(np.arange(0, sample.num_requests, replicas))
    if config.batching == "static":
        share = share.head(STATIC_REPLAY_REQUESTS)
    share = share.time_scaled(1.0)  # first arrival at 0
    try:
        replica = Replica(config.deployment(), config.scheduler(), item.profile)
    except ConfigError as exc:
        return {"error": str(exc)}
    result, used = _run(config, replica, share, ctx.options.seed)
    ttft, tpot = _per_request(result, share)
    done = np.isfinite(ttft)
    many = done & (share.output_tokens > 1)
    span = max(result.end_s - float(np.nanmin(result.send_s)), 1e-12)

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if values.size else math.nan

    return {
        "requests": int(share.num_requests),
        "replicas": replicas,
        "completed": int(done.sum()),
        "ttft_p50_s": pct(ttft[done], 50),
        "ttft_p95_s": pct(ttft[done], 95),
        "tpot_p50_s": pct(tpot[many], 50),
        "tpot_p95_s": pct(tpot[many], 95),
        "busy_fraction": min(result.busy_s / span, 1.0),
        "output_tokens_per_s": float(share.output_tokens[done].sum()) / span,
        "preemptions": int(result.total_preemptions),
        "kv_capacity_tokens": int(used.memory.kv_capacity_tokens),
    }
