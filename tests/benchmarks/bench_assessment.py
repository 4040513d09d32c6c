"""Assessment benchmark: a whole fleet through all five strategies and the planner.

Reproduce with `make bench` or `.venv/bin/python -m tests.benchmarks bench_assessment`.

`assessment_seconds`: wall time of `advisor.engine.planner.assess` on a fleet of 10
deployments (Llama-3-8B, Qwen2.5-7B and Llama-3-70B on H100-SXM, L40S and A100-80GB; one
static-batching server, two light models, a nightly batch job), each with 7 days of 1-minute
load (10,080 steps, diurnal and weekly shapes) and a 100,000-request sample bootstrapped
from the Azure 2023 conversation or code trace at its mean rate, or for the RAG deployment from
the Mooncake FAST'25 conversation trace, whose prompts carry 512-token block hashes (37% of
prompt tokens reusable; the requests longer than Qwen2.5-7B's 32,768 tokens left out), so
the prefix cache is simulated there: a 1,000,000-request trace sample in all, every request
of which is replayed once on today's configuration. All five
strategies run on every deployment, then the planner's search (with the price sheet offering
the five GPU kinds of `KINDS`, at their catalog prices, so every deployment may also move to
another kind), sharing, the 64-row combination table and the sensitivity analysis. Building
the scenario is not timed. A warm-up assessment of a one-deployment fleet first loads (or
compiles) the simulator's and the HPA's compiled loops, as a running worker would have.
Target: <= 60 s on one core (the engine is single-threaded). Also printed: the process CPU
time of the same run (on a shared machine the wall time includes waiting for a core), each
move to another GPU kind the plan makes, and, from the planner's search run again on its
own, the load curves it simulates and the hardware moves its cost bound rules out unsimulated.
The other nine samples carry no prompt block hashes, so the timed run includes re-sizing
their chosen configurations at 30% and 60% assumed prefix reuse (`DeploymentPlan.prefix_reuse`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.context import AssessmentContext
from advisor.engine.planner import PER_DEPLOYMENT, assess, search
from advisor.engine.scenario import (
    DeploymentSpec,
    EngineArgs,
    Options,
    PriceEntry,
    Scenario,
    SloSpec,
    WorkloadSpec,
    diurnal_load,
)
from advisor.engine.workload import (
    Workload,
    load_azure_trace,
    load_mooncake_trace,
    resample_workload,
)
from tests.benchmarks import Figure

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "probes" / "data" / "traces"
SAMPLE_REQUESTS = 100_000
DAYS = 7
KINDS = ("H100-SXM", "H200-SXM", "A100-80GB", "L40S", "L4")  # what the price sheet offers
MOONCAKE_MAX_TOKENS = 32_768  # Qwen2.5-7B's max_position_embeddings

# name, model, hardware, TP, replicas, mean req/s, peak/trough, trace, SLO (TTFT, TPOT), extra
FLEET: tuple[tuple[str, str, str, int, int, float, float, str, tuple[float, float], dict], ...] = (
    ("chat-8b", "Llama-3-8B", "H100-SXM", 1, 4, 12.0, 4.0, "conv", (1.0, 0.05), {}),
    ("chat-8b-eu", "Llama-3-8B", "H100-SXM", 1, 3, 6.0, 3.0, "conv", (1.0, 0.05), {}),
    ("code-7b", "Qwen2.5-7B", "L40S", 1, 4, 1.2, 4.0, "code", (3.0, 0.08), {}),
    ("assistant-70b", "Llama-3-70B", "H100-SXM", 4, 2, 1.5, 3.0, "conv", (3.0, 0.1), {}),
    ("support-70b", "Llama-3-70B", "H100-SXM", 4, 1, 0.6, 2.0, "conv", (3.0, 0.1), {}),
    ("rag-7b", "Qwen2.5-7B", "A100-80GB", 1, 3, 0.6, 3.0, "mooncake", (5.0, 0.08), {}),
    ("summarizer-8b", "Llama-3-8B", "H100-SXM", 1, 1, 0.15, 1.0, "conv", (2.0, 0.1), {}),
    ("classifier-7b", "Qwen2.5-7B", "H100-SXM", 1, 1, 0.1, 1.0, "code", (2.0, 0.1), {}),
    ("nightly-8b", "Llama-3-8B", "L40S", 1, 2, 1.5, 1.0, "conv", (2.0, 0.1),
     {"active_hours_utc": (0.0, 6.0)}),
    ("legacy-static-8b", "Llama-3-8B", "A100-80GB", 1, 4, 1.0, 3.0, "conv", (5.0, 0.1),
     {"batching": "static"}),
)  # fmt: skip


def fleet(rng_seed: int = 0) -> Scenario:
    mooncake = load_mooncake_trace(TRACES / "mooncake_conversation_trace.jsonl.gz")
    traces = {
        "conv": load_azure_trace(TRACES / "AzureLLMInferenceTrace_conv.csv"),
        "code": load_azure_trace(TRACES / "AzureLLMInferenceTrace_code.csv"),
        # Qwen2.5-7B serves 32,768 tokens: the 846 longer requests of 12,031 are left out
        "mooncake": mooncake.select(
            mooncake.prompt_tokens + mooncake.output_tokens <= MOONCAKE_MAX_TOKENS
        ),
    }
    names = {
        "conv": "Azure 2023 conv trace",
        "code": "Azure 2023 code trace",
        "mooncake": "Mooncake FAST'25 conversation trace (prefix block hashes)",
    }
    deployments = []
    for index, row in enumerate(FLEET):
        name, model, hardware, tp, replicas, mean, ratio, trace, slo, extra = row
        rng = np.random.default_rng([rng_seed, index])
        sample: Workload = resample_workload(
            traces[trace], rng, num_requests=SAMPLE_REQUESTS, rate_rps=mean
        )
        load = diurnal_load(
            rng,
            days=DAYS,
            mean_rps=mean,
            peak_to_trough=ratio,
            weekend_factor=0.6,
            active_hours_utc=extra.get("active_hours_utc"),
        )
        deployments.append(
            DeploymentSpec(
                name=name,
                model=model,
                hardware=hardware,
                tensor_parallel=tp,
                replicas=replicas,
                workload=WorkloadSpec(sample, load, f"{names[trace]}, bootstrapped"),
                batching=extra.get("batching", "continuous"),
                engine_args=EngineArgs(),
                slo=SloSpec(slo[0], slo[1]),
            )
        )
    prices = {
        kind: PriceEntry(DEFAULT_CATALOG.gpu(kind).price_usd_per_hour, "bench: catalog price")
        for kind in KINDS
    }
    return Scenario(
        tuple(deployments), prices=prices, options=Options(seed=rng_seed), name="bench fleet"
    )


def run() -> Iterator[Figure]:
    scenario = fleet()
    total = sum(d.workload.sample.num_requests for d in scenario.deployments)
    warm = Scenario(scenario.deployments[6:7], options=scenario.options)
    assess(warm)  # load or compile the simulator's and the autoscaler's compiled loops
    wall = time.perf_counter()
    cpu = time.process_time()
    plan = assess(scenario)
    wall_s = time.perf_counter() - wall
    cpu_s = time.process_time() - cpu
    base, new = plan.fleet_baseline, plan.fleet_plan
    print(
        f"# {len(scenario.deployments)} deployments, {total} sample requests, "
        f"{DAYS * 1440} load steps each; plan {new.gpus:.1f} GPUs vs {base.gpus:.1f} today, "
        f"${new.usd_per_month:,.0f} vs ${base.usd_per_month:,.0f}/month "
        f"({plan.savings_fraction:.1%} saved); {len(plan.combinations)} combinations"
    )
    for item in plan.deployments:
        if item.move:
            print(f"# move: {item.move}")
    unknown = sum(1 for item in plan.deployments if item.prefix_reuse)
    print(f"# prefix reuse unknown: {unknown} deployments re-sized at 0%, 30% and 60% reuse")
    yield Figure("assessment_seconds", wall_s, "s", "<= 60")
    yield Figure("assessment_cpu_seconds", cpu_s, "s", "info")
    # the search alone again, to count its work (curves are cached per context)
    ctx = AssessmentContext(scenario)
    enabled = frozenset(scenario.options.strategy_names) & frozenset(PER_DEPLOYMENT)
    pruned = sum(search(ctx, item, enabled).pruned for item in ctx.resolved.values())
    print(
        f"# price sheet offers {len(KINDS)} kinds ({', '.join(KINDS)}); the search alone: "
        f"{ctx.curves_simulated} load curves, {pruned} hardware moves pruned unsimulated"
    )
