"""Benchmark runs as the pages show them: the measured summary beside the engine's prediction.

Each `BenchmarkRun` stores the measured summary (named like `vllm bench serve`), the engine's
prediction of the same workload on the same node (`predicted.figures`) and, per compared
figure, predicted / measured / relative error (`prediction_error`, error = predicted /
measured - 1). Nothing is recomputed here; runs without a prediction say why
(`predicted.error`, e.g. the endpoint does not say its hardware).

An A/B job (kind "ab", the continuous-batching comparison among them) stores in
`result["ab"]` the two runs' ids, the measured candidate / baseline ratios and the engine's
predicted ratios with their error (`advisor.services.benchmark_runs._ab_job`); `ab_view`
lines them up with each side's args and measured figures for the page's A/B card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from advisor.models import BenchmarkJob, BenchmarkRun
from dashboard.selectors.assessments import finite
from dashboard.selectors.config_diff import ArgLine, args_diff, args_text

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
# Ratios an A/B job stores both measured and predicted (candidate / baseline), with labels.
AB_RATIOS = (
    ("output_throughput", "output tokens/s"),
    ("median_ttft_ms", "TTFT p50"),
    ("median_tpot_ms", "TPOT p50"),
    ("p99_e2el_ms", "E2E p99"),
)
AB_SIDES = ("baseline", "candidate")


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


@dataclass(frozen=True)
class AbSide:
    """One side of an A/B: its engine args and what its run measured (None: not measured)."""

    name: str
    run_id: int | None
    status: str
    error: str
    engine_args: dict[str, Any]
    args_text: str  # as CLI flags, "" when the side adds none to the base args
    output_throughput: float | None  # tok/s
    median_ttft_ms: float | None
    median_tpot_ms: float | None
    tokens_per_step: float | None  # the server's mean tokens per engine step: batching at work


@dataclass(frozen=True)
class AbRatio:
    """Candidate / baseline of one figure: measured, predicted, error = predicted / measured - 1."""

    name: str
    label: str
    measured: float | None
    predicted: float | None
    error: float | None


@dataclass(frozen=True)
class AbQuality:
    """One side's checkpoint and its quality figure, which the A/B itself did not measure."""

    name: str
    checkpoint: str  # what the job asked for: the side's own, or the endpoint's
    served_root: str  # what the server said it loaded (/v1/models root), "" when unknown
    precision: str  # "" when not known
    precision_from: str
    delta_points: float | None  # vs BF16, negative = worse; None: no figure
    source: str  # the label: the catalog's source or "measured by you: ..."
    kind: str  # reference, measured, published, estimate ("" without a figure)


@dataclass(frozen=True)
class AbView:
    label: str
    switched_by: str
    sides: tuple[AbSide, AbSide]
    args: tuple[ArgLine, ...]  # baseline's args -> candidate's
    ratios: tuple[AbRatio, ...]
    prediction_note: str  # why there is no prediction, or what the engine does not model
    quality_note: str = ""  # A/Bs stored before checkpoints could differ have none
    quality: tuple[AbQuality, ...] = ()


def _ab_quality(name: str, run: BenchmarkRun | None, figure: dict[str, Any]) -> AbQuality:
    served = ((run.config or {}).get("served_model") or {}) if run is not None else {}
    return AbQuality(
        name=name,
        checkpoint=str(figure.get("model") or "the endpoint's"),
        served_root=str(served.get("root") or ""),
        precision=str(figure.get("precision") or ""),
        precision_from=str(figure.get("precision_from") or ""),
        delta_points=finite(figure.get("delta_points")),
        source=str(figure.get("source") or ""),
        kind=str(figure.get("kind") or ""),
    )


def _ab_side(name: str, run: BenchmarkRun | None, spec_args: dict[str, Any]) -> AbSide:
    summary = (run.summary or {}) if run is not None else {}
    server = (run.server_metrics or {}) if run is not None else {}
    engine_args = dict(run.engine_args if run is not None and run.engine_args else spec_args)
    return AbSide(
        name=name,
        run_id=run.id if run is not None else None,
        status=run.status if run is not None else "not run",
        error=run.error if run is not None else "",
        engine_args=engine_args,
        args_text=args_text(engine_args),
        output_throughput=finite(summary.get("output_throughput")),
        median_ttft_ms=finite(summary.get("median_ttft_ms")),
        median_tpot_ms=finite(summary.get("median_tpot_ms")),
        tokens_per_step=finite(server.get("mean_tokens_per_step")),
    )


def ab_view(job: BenchmarkJob) -> AbView | None:
    """The A/B card of an A/B job with a stored result (None for other jobs, or before one)."""
    ab = (job.result or {}).get("ab")
    if job.kind != "ab" or not ab:
        return None
    spec = (job.spec or {}).get("ab") or {}
    runs = {run.id: run for run in job.runs.defer("prompts")}
    baseline, candidate = (
        _ab_side(side, runs.get(ab.get(f"{side}_run_id")), spec.get(f"{side}_args") or {})
        for side in AB_SIDES
    )
    measured = ab.get("measured") or {}
    predicted = ab.get("predicted") or {}
    ratios = []
    for name, label in AB_RATIOS:
        guess = predicted.get(f"{name}_ratio")
        guess = guess if isinstance(guess, dict) else {}
        ratios.append(
            AbRatio(
                name=name,
                label=label,
                measured=finite(measured.get(f"{name}_ratio")),
                predicted=finite(guess.get("predicted")),
                error=finite(guess.get("error")),
            )
        )
    quality = ab.get("quality") or {}
    figures = tuple(
        _ab_quality(side, runs.get(ab.get(f"{side}_run_id")), quality.get(side) or {})
        for side in AB_SIDES
        if quality
    )
    if predicted.get("error"):
        note = f"no prediction: {predicted['error']}"
    elif predicted.get("unmodelled"):
        note = f"not modelled by the engine: {', '.join(predicted['unmodelled'])}"
    else:
        note = ""
    return AbView(
        label=str(ab.get("label") or spec.get("label") or ""),
        switched_by=str(ab.get("switched_by") or ""),
        sides=(baseline, candidate),
        args=args_diff(baseline.engine_args, {"engine_args": candidate.engine_args}, replaces=True),
        ratios=tuple(ratios),
        prediction_note=note,
        quality_note=str(quality.get("note") or ""),
        quality=figures,
    )
