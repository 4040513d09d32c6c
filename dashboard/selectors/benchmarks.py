"""Benchmark runs as the pages show them: the measured summary beside the engine's prediction.

Each `BenchmarkRun` stores the measured summary (named like `vllm bench serve`), the engine's
prediction of the same workload on the same node (`predicted.figures`) and, per compared
figure, predicted / measured / relative error (`prediction_error`, error = predicted /
measured - 1). Nothing is recomputed here; runs without a prediction say why
(`predicted.error`, e.g. the endpoint does not say its hardware).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from advisor.models import BenchmarkJob, BenchmarkRun
from dashboard.selectors.assessments import finite

# Figures compared with the engine, with their labels and units (from the benchmark client).
COMPARED = (
    ("output_throughput", "output tokens/s", "tok/s"),
    ("request_throughput", "requests/s", "req/s"),
    ("median_ttft_ms", "TTFT p50", "ms"),
    ("p99_ttft_ms", "TTFT p99", "ms"),
    ("median_tpot_ms", "TPOT p50", "ms"),
    ("p99_tpot_ms", "TPOT p99", "ms"),
    ("median_e2el_ms", "E2E p50", "ms"),
    ("p99_e2el_ms", "E2E p99", "ms"),
)
MAX_COMPARE = 12


@dataclass(frozen=True)
class RunView:
    run: BenchmarkRun
    job_id: int
    label: str
    summary: dict[str, Any]
    errors: dict[str, Any]  # figure -> {predicted, measured, error}
    prediction_note: str  # why there is no prediction, or which profile made it

    @property
    def median_abs_error(self) -> float | None:
        return finite(self.errors.get("median_abs_error"))

    def figure(self, name: str) -> dict[str, float | None]:
        entry = self.errors.get(name) or {}
        measured = finite(entry.get("measured"))
        if measured is None:
            measured = finite(self.summary.get(name))
        return {
            "measured": measured,
            "predicted": finite(entry.get("predicted")),
            "error": finite(entry.get("error")),
        }

    @property
    def compared(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "label": label, "unit": unit, **self.figure(name)}
            for name, label, unit in COMPARED
        ]


def run_view(run: BenchmarkRun) -> RunView:
    predicted = run.predicted or {}
    if predicted.get("error"):
        note = f"no prediction: {predicted['error']}"
    elif predicted.get("figures"):
        source = predicted.get("profile_source") or "engine profile"
        fit = finite(predicted.get("profile_fit_median_ape"))
        note = f"predicted with {source}" + (f" (fit error {fit:.1%})" if fit is not None else "")
        if predicted.get("unmodelled"):
            note += f"; not modelled: {', '.join(predicted['unmodelled'])}"
    else:
        note = "no prediction stored"
    return RunView(
        run=run,
        job_id=run.job_id,
        label=f"#{run.job_id}/{run.sequence} {run.label}",
        summary=run.summary or {},
        errors=run.prediction_error or {},
        prediction_note=note,
    )


def runs_of(job: BenchmarkJob) -> list[RunView]:
    return [run_view(run) for run in job.runs.order_by("sequence")]


def runs_by_ids(ids: list[int]) -> list[RunView]:
    """Runs to compare, in the order asked (unknown ids are left out)."""
    rows: QuerySet[BenchmarkRun] = (
        BenchmarkRun.objects.filter(id__in=ids[:MAX_COMPARE])
        .select_related("job__endpoint__deployment")
        .defer("prompts")
    )
    by_id = {run.id: run for run in rows}
    return [run_view(by_id[i]) for i in ids[:MAX_COMPARE] if i in by_id]


def job_median_error(job: BenchmarkJob) -> float | None:
    """The median of the runs' median absolute prediction errors (None without predictions)."""
    found = (finite((run.prediction_error or {}).get("median_abs_error")) for run in job.runs.all())
    values = sorted(v for v in found if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
