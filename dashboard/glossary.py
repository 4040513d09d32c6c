"""The words pages and reports use for their numbers, each defined once.

Templates show a definition with `{% define "key" %}` (dashboard_tags); the README's
"Definitions" section quotes every one verbatim (a test keeps them equal). Where a word
names a computation, its module says how it is computed: idle minutes in
`probes.services.rollups`, burstiness in `advisor.burstiness`, measured usage in
`advisor.selectors.assessment_measured`, the engine's figures in `advisor.engine.advice`.
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.models import IDLE_UTIL_PCT


@dataclass(frozen=True)
class Term:
    label: str
    definition: str


TERMS: dict[str, Term] = {
    "gpu_utilization": Term(
        "GPU utilization",
        "measured: the share of time a kernel runs on the GPU, as NVML and DCGM report it "
        '(nvidia-smi\'s utilization.gpu), averaged over time. "Simulated busy" is the same '
        "quantity as the engine simulates it; the gap between the two says how well the "
        "engine reproduces today.",
    ),
    "load_capacity": Term(
        "load / capacity",
        "the engine's estimate: the load served over what the provisioned GPUs could serve "
        "at saturation (the largest batch the SLOs allow). Not GPU utilization: a GPU that "
        "runs small batches all the time is busy most of the time while serving a small "
        "part of its capacity.",
    ),
    "idle_gpu_hours": Term(
        "idle GPU-hours",
        f"the minutes in which a GPU's utilization stayed below {IDLE_UTIL_PCT:.0f}% (every "
        "sample of the minute), in hours. Counted per minute whatever the window's length: "
        "hour rollups keep how many of their minutes were idle.",
    ),
    "unused_capacity": Term(
        "unused capacity",
        "(1 - GPU utilization) x time, in GPU-hours or at the GPU's price: capacity paid "
        "for and not used, idle time included.",
    ),
    "burstiness": Term(
        "burstiness",
        "the gamma shape (1 / CV^2) of request inter-arrival gaps, each gap scaled by its "
        "minute's request rate so a daily cycle does not count, as vllm bench serve "
        "--burstiness takes it: 1 is Poisson, below 1 burstier, above 1 smoother. The "
        "traces page and the assessment compute it the same way.",
    ),
    "inter_arrival_cv": Term(
        "inter-arrival CV",
        "std / mean of the raw gaps between request arrivals: 1 for Poisson, above 1 bursty. "
        "Not burstiness: no rate normalisation, and it grows as burstiness falls.",
    ),
    "measured_today": Term(
        "measured today",
        "GPU-hours the telemetry saw in the assessment's window x each GPU kind's price, "
        'per month, for the same deployments as "simulated today" (the deployments in the '
        "totals); the assessment page gives the whole cluster's figure beside it.",
    ),
    "simulated_today": Term(
        "simulated today",
        "the engine's replay of today's configuration on the window's traffic, for the "
        "assessed deployments, plus the deployments held at today's cost.",
    ),
    "gpus": Term(
        "GPUs",
        "in an assessment, the GPUs assigned to the deployments in the totals (the simulated "
        "figures' mean over the window where autoscaled); the cluster's count adds the "
        "deployments not assessed and the GPUs no deployment uses.",
    ),
    "list_price": Term(
        "list price",
        "a GPU kind without a price sheet row. The fleet page and the fleet report list "
        "its hours apart and do not price them; an assessment prices it at the engine "
        "catalog's list price and says so, in its assumptions and the report's footer.",
    ),
}


def definition(key: str) -> str:
    """The definition of `key` (a KeyError names a word the glossary lacks)."""
    return TERMS[key].definition


def readme_lines() -> list[str]:
    """The README's "Definitions" section, one line per word."""
    return [f"- **{term.label}**: {term.definition}" for term in TERMS.values()]
