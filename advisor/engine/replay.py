"""Today's configuration replaying a deployment's whole request sample, as it arrived.

The load curves use a bootstrapped window of the sample; this runs every request of the
sample (e.g. a 1M-request trace) through the simulator once, at its recorded arrival times,
split over today's replicas by the deployment's router (`DeploymentSpec.routing`, see
`advisor.engine.routing`). Its latencies and busy fraction are what the assessment compares
with the fleet's measured telemetry before trusting the projections.

Round robin: the replicas' shares are alike, so one share (every n-th request) is simulated
and stands for each replica. Prefix-aware: the router's multi-replica cache pass assigns
every request, each replica's share is simulated, latencies are pooled over all requests and
per-replica figures (busy fraction, throughput, preemptions) are means over the replicas.
Static batching has no prefix cache in the simulator and always replays one round-robin
share. `prefix_cached_share` is the share of the simulated prompt tokens the replicas'
prefix caches (and host tiers) spared.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from advisor.engine.capacity import ReplicaConfig, _per_request, _run
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.perf import CalibrationProfile, ConfigError
from advisor.engine.results import SimResult
from advisor.engine.routing import RoutingPolicy, route
from advisor.engine.sim import Replica, prefix_hits_on
from advisor.engine.workload import Workload

STATIC_REPLAY_REQUESTS = 2_000  # the static-batching simulator is plain Python (slow)


def replay(ctx: AssessmentContext, item: Resolved) -> dict[str, object]:
    return replay_sample(
        item.baseline,
        item.profile,
        item.spec.workload.sample,
        replicas=max(item.spec.replicas, 1),
        routing=item.spec.routing,
        seed=ctx.options.seed,
    )


def _pct(values: npt.NDArray[np.float64], q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def replay_sample(
    config: ReplicaConfig,
    profile: CalibrationProfile,
    sample: Workload,
    *,
    replicas: int,
    routing: RoutingPolicy,
    seed: int,
) -> dict[str, object]:
    """Replay `sample` on `replicas` copies of `config` behind a `routing` router."""
    try:
        replica = Replica(config.deployment(), config.scheduler(), profile)
    except ConfigError as exc:
        return {"error": str(exc)}
    aware = routing == "prefix_aware" and config.batching == "continuous" and replicas > 1
    if aware:
        routed = route(replica, sample, num_replicas=replicas, policy="prefix_aware")
        shares = routed.shares(sample)
    else:
        share = sample.select(np.arange(0, sample.num_requests, replicas))
        if config.batching == "static":
            share = share.head(STATIC_REPLAY_REQUESTS)
        shares = [share]
    runs: list[tuple[Workload, SimResult]] = []
    used = replica
    idle = 0  # replicas the router sent nothing (busy 0, no output)
    for share in shares:
        if not share.num_requests:
            idle += 1
            continue
        share = share.time_scaled(1.0)  # first arrival at 0
        result, used = _run(config, replica, share, seed)
        runs.append((share, result))
    ttft_all, tpot_all, busy, rate = [], [], [], []
    cached = prompt = 0.0
    preemptions = 0
    completed = 0
    for share, result in runs:
        ttft, tpot = _per_request(result, share)
        done = np.isfinite(ttft)
        many = done & (share.output_tokens > 1)
        ttft_all.append(ttft[done])
        tpot_all.append(tpot[many])
        span = max(result.end_s - float(np.nanmin(result.send_s)), 1e-12)
        busy.append(min(result.busy_s / span, 1.0))
        rate.append(float(share.output_tokens[done].sum()) / span)
        preemptions += int(result.total_preemptions)
        completed += int(done.sum())
        if config.batching == "continuous" and not aware:
            cached += float(prefix_hits_on(replica, share).cached_tokens.sum())
        prompt += float(share.prompt_tokens.sum())
    if aware:  # the routing pass already ran each replica's cache over its share
        cached = float(routed.hits.cached_tokens.sum())
    ttft_pooled = np.concatenate(ttft_all)
    tpot_pooled = np.concatenate(tpot_all)
    out: dict[str, object] = {
        "requests": sum(share.num_requests for share, _ in runs),
        "replicas": replicas,
        "routing": "prefix_aware" if aware else "round_robin",
        "completed": completed,
        "ttft_p50_s": _pct(ttft_pooled, 50),
        "ttft_p95_s": _pct(ttft_pooled, 95),
        "tpot_p50_s": _pct(tpot_pooled, 50),
        "tpot_p95_s": _pct(tpot_pooled, 95),
        "busy_fraction": float(np.sum(busy)) / (len(busy) + idle),
        "output_tokens_per_s": float(np.sum(rate)) / (len(rate) + idle),
        "preemptions": round(preemptions / (len(runs) + idle)),
        "kv_capacity_tokens": int(used.memory.kv_capacity_tokens),
        "prefix_cached_share": cached / prompt if prompt > 0 else 0.0,
    }
    if aware:
        out["busy_fraction_max"] = float(np.max(busy))
        out["requests_per_replica"] = routed.requests_per_replica().tolist()
    return out
