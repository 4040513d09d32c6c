"""Execute a claimed benchmark job: drive load, store every run as it finishes, predict.

`benchmark_job_execute(job_id=...)` is what the `bench` task calls after claiming the job.
Each measured run is stored at once (summary, server metrics, per-request rows, the GPU
telemetry the node's agent pushed for that window, the engine's prediction of the same
workload and its error), so a job that fails half-way keeps what it measured. The load
client polls `cancel_requested` on the job row; cancelling stops the run in flight and the
job. Endpoint trouble ends the job as failed with the client's error, never a hung worker
(every network step has a timeout and runs have the endpoint's duration cap). An exception
(a bug) while an A/B variant is measured or stored fails the job with an error naming the
variant; the runs measured before it are stored and a switched node is restored.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Count, Max, Min
from django.utils import timezone

from advisor.benchmarking.ab import (
    CANCELLED,
    CheckpointMissing,
    Stop,
    Variant,
    VariantRun,
    compare,
    measure_in_turn,
    run_variants,
    unmeasured,
)
from advisor.benchmarking.checkpoints import (
    QUALITY_NOT_MEASURED,
    checkpoint_precision,
    side_quality,
)
from advisor.benchmarking.export import finite_json
from advisor.benchmarking.prediction import (
    EngineTarget,
    PredictionError,
    predict,
    prediction_errors,
)
from advisor.benchmarking.results import BenchmarkResult
from advisor.benchmarking.runner import Limits, RunOptions, Target, run_benchmark
from advisor.benchmarking.summary import Slo
from advisor.benchmarking.sweep import GoodputPlan, SweepPoint, meets
from advisor.benchmarking.workloads import WorkloadSpec
from advisor.engine.scenario import QualityOverride
from advisor.engine.workload import Workload
from advisor.models import (
    BenchmarkEndpoint,
    BenchmarkJob,
    BenchmarkRequest,
    BenchmarkRun,
    JobKind,
    JobStatus,
)
from advisor.selectors.benchmarks import calibration_profile_for
from advisor.services.ab_controller import (
    APPLY_TIMEOUT_S,
    AbCancelled,
    AbSwitchError,
    NodeSwitch,
    ab_uses_controller,
)
from probes.agent.vllm_process import VllmLaunch, engine_args_to_argv
from probes.selectors import gpu_samples_in_window, requests_in_window

log = logging.getLogger(__name__)

REQUEST_BATCH = 2000  # rows per INSERT: ~2000 x 1 KB of ITLs stays well under 8 MB
POLL_S = 1.0  # cancel/progress checks open a short DB connection each: once a second
# The time budget of a job (`job_time_budget_s`): every step it takes has its own timeout,
# so a job running longer than all of them in a row is stuck, not slow.
STORE_S = 300.0  # storing one run: up to 100,000 requests with their ITLs, its prediction
AB_SWITCHES = 3  # baseline config, candidate config, and the original one back
LOCAL_READY_TIMEOUT_S = 300.0  # a local vLLM restart must serve within this (A/B)


@dataclass
class _Context:
    job: BenchmarkJob
    endpoint: BenchmarkEndpoint
    target: Target
    limits: Limits
    options: RunOptions
    spec: WorkloadSpec
    trace: Workload | None
    slo: Slo | None
    engine: EngineTarget | None
    sequence: int = 0


def benchmark_job_execute(*, job_id: int) -> None:
    """Run a job that is already `running` (claimed by the task) to its end state."""
    job = BenchmarkJob.objects.select_related("endpoint__node", "endpoint__deployment").get(
        id=job_id
    )
    ctx = _context(job)
    handlers: dict[str, Callable[[_Context], tuple[str, str, dict[str, Any]]]] = {
        JobKind.RUN: _run_job,
        JobKind.SWEEP: _sweep_job,
        JobKind.GOODPUT: _goodput_job,
        JobKind.AB: _ab_job,
    }
    status, error, result = handlers[job.kind](ctx)
    if status == JobStatus.COMPLETED and job.spec["options"].get("calibrate"):
        from advisor.services.calibration import CalibrationError, calibration_fit

        try:
            record = calibration_fit(job_id=job.id)
            result["calibration"] = {
                "record_id": record.id,
                "fit_median_ape": record.fit_median_ape,
            }
        except CalibrationError as exc:
            result["calibration"] = {"error": str(exc)}
    # Only a row still `running`: one the reaper already failed ("worker lost") keeps that end.
    BenchmarkJob.objects.filter(id=job.id, status=JobStatus.RUNNING).update(
        status=status,
        error=error,
        result=result,
        progress=1.0 if status == JobStatus.COMPLETED else job.progress,
        finished_at=timezone.now(),
    )


def job_time_budget_s(job: BenchmarkJob) -> float:
    """The longest `job` can take when each of its steps runs to its own timeout.

    Per run: the setup calls (/v1/models, /tokenize, /metrics before and after), the warm-up
    requests, the duration cap and storing; an A/B adds its config switches, each bounded by
    the controller's apply timeout or the local restart's ready timeout. Past this, the job is
    stuck: its row is failed and its task killed (`advisor.tasks.bench`).
    """
    limits = Limits(max_duration_s=float(job.max_duration_s))
    options = job.spec.get("options") or {}
    run_s = (
        4 * limits.setup_timeout_s
        + int(options.get("warmup_requests", 1)) * limits.request_timeout_s
        + limits.max_duration_s
        + STORE_S
    )
    runs = {
        JobKind.RUN: 1,
        JobKind.SWEEP: len((job.spec.get("sweep") or {}).get("values", [])),
        JobKind.GOODPUT: int((job.spec.get("goodput") or {}).get("max_runs", 0)),
        JobKind.AB: 2,
    }[JobKind(job.kind)]
    switch_s = 0.0
    if job.kind == JobKind.AB:
        ab = job.spec.get("ab") or {}
        launch = job.endpoint.local_launch or {}
        switch_s = AB_SWITCHES * max(
            float(ab.get("apply_timeout_s", APPLY_TIMEOUT_S)),
            float(launch.get("ready_timeout_s", LOCAL_READY_TIMEOUT_S)),
        )
    return runs * run_s + switch_s + STORE_S


# -- context -------------------------------------------------------------------------------
def _context(job: BenchmarkJob) -> _Context:
    endpoint = job.endpoint
    spec = WorkloadSpec.from_json(job.spec["workload"])
    opts = job.spec["options"]
    slo = Slo(**job.spec["slo"]) if job.spec.get("slo") else None
    options = RunOptions(
        ignore_eos=opts.get("ignore_eos", True),
        prompt_mode=opts.get("prompt_mode", "auto"),
        seed=opts.get("seed", 0),
        warmup_requests=opts.get("warmup_requests", 1),
        clip_to_max_model_len=opts.get("clip_to_max_model_len", False),
        slo=slo,
        extra_body=opts.get("sampling", {}),
    )
    engine = None
    if endpoint.hardware:
        engine = EngineTarget(
            hardware=endpoint.hardware,
            model=endpoint.model_ref or endpoint.deployment.model_id,
            quant=endpoint.quant,
            kv_cache_bytes=endpoint.kv_cache_bytes,
            engine_args=dict(endpoint.deployment.engine_args or {}),
        )
    return _Context(
        job=job,
        endpoint=endpoint,
        target=Target(
            endpoint.base_url,
            endpoint.deployment.served_name,
            api=endpoint.api,  # type: ignore[arg-type]
            metrics_url=endpoint.metrics_url or None,
        ),
        limits=Limits(
            max_concurrency=job.max_concurrency,
            max_duration_s=float(job.max_duration_s),
            max_requests=endpoint.max_requests,
            poll_s=POLL_S,
        ),
        options=options,
        spec=spec,
        trace=_trace_workload(job, endpoint, spec) if spec.kind == "replay" else None,
        slo=slo,
        engine=engine,
    )


def _trace_workload(job: BenchmarkJob, endpoint: BenchmarkEndpoint, spec: WorkloadSpec) -> Workload:
    """The deployment's recorded requests in the job's window, as arrival offsets + lengths."""
    window = job.spec["trace"]
    records = requests_in_window(
        deployment=endpoint.deployment,
        start=datetime.fromisoformat(window["start"]),
        end=datetime.fromisoformat(window["end"]),
    )
    wanted = spec.num_requests or endpoint.max_requests
    rows = list(
        records.values_list("arrival_ts", "prompt_tokens", "output_tokens")[
            : min(wanted, endpoint.max_requests)
        ]
    )
    first = rows[0][0]
    return Workload(
        np.array([(ts - first).total_seconds() for ts, _p, _o in rows], dtype=np.float64),
        np.array([max(1, p) for _ts, p, _o in rows], dtype=np.int64),
        np.array([max(1, o) for _ts, _p, o in rows], dtype=np.int64),
        name=f"{endpoint.deployment.served_name} requests {window['start']} .. {window['end']}",
    )


# -- callbacks the load client runs in its worker threads ----------------------------------
def _in_thread(query: Callable[[], Any]) -> Any:
    try:
        return query()
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()  # a worker thread's own connection: do not leave it open


def _cancel_check(job_id: int) -> Callable[[], bool]:
    def check() -> bool:
        return bool(
            _in_thread(
                lambda: BenchmarkJob.objects.filter(id=job_id, cancel_requested=True).exists()
            )
        )

    return check


def _progress(job_id: int, part: int, parts: int) -> Callable[[int, int], None]:
    last = [-1.0]

    def report(done: int, total: int) -> None:
        value = round((part + (done / total if total else 0.0)) / parts, 3)
        if value - last[0] >= 0.01:
            last[0] = value
            _in_thread(lambda: BenchmarkJob.objects.filter(id=job_id).update(progress=value))

    return report


def _cancelled_now(job_id: int) -> bool:
    return BenchmarkJob.objects.filter(id=job_id, cancel_requested=True).exists()


# -- job kinds -----------------------------------------------------------------------------
def _measure(
    ctx: _Context, spec: WorkloadSpec, *, part: int, parts: int, options: RunOptions | None = None
) -> tuple[Workload, BenchmarkResult]:
    workload = spec.build(ctx.trace)
    result = run_benchmark(
        ctx.target,
        workload,
        limits=ctx.limits,
        options=options or ctx.options,
        cancel=_cancel_check(ctx.job.id),
        progress=_progress(ctx.job.id, part, parts),
    )
    return workload, result


def _job_status(result: BenchmarkResult) -> tuple[str, str]:
    if result.status == "failed":
        return JobStatus.FAILED, result.error
    if result.status == "cancelled":
        return JobStatus.CANCELLED, "cancelled"
    return JobStatus.COMPLETED, result.error  # duration_capped: measured, with a note


def _run_job(ctx: _Context) -> tuple[str, str, dict[str, Any]]:
    workload, result = _measure(ctx, ctx.spec, part=0, parts=1)
    verdict = meets(result, ctx.slo) if ctx.slo else None
    run = _store_run(ctx, "run", None, ctx.spec, workload, result, meets_slo=verdict)
    status, error = _job_status(result)
    return status, error, {"run_id": run.id}


def _sweep_job(ctx: _Context) -> tuple[str, str, dict[str, Any]]:
    sweep = ctx.job.spec["sweep"]
    over, values = sweep["over"], sweep["values"]
    points: list[dict[str, Any]] = []
    status: str = JobStatus.COMPLETED
    error = ""
    for part, value in enumerate(values):
        if _cancelled_now(ctx.job.id):
            status, error = JobStatus.CANCELLED, "cancelled"
            break
        spec = ctx.spec.at_rate(value) if over == "rate" else ctx.spec.at_concurrency(value)
        workload, result = _measure(ctx, spec, part=part, parts=len(values))
        verdict = meets(result, ctx.slo) if ctx.slo else None
        run = _store_run(ctx, f"{over} {value:g}", float(value), spec, workload, result,
                         meets_slo=verdict)  # fmt: skip
        points.append(_point_json(run, result, verdict))
        status, error = _job_status(result)
        if status != JobStatus.COMPLETED:
            break
    return status, error, {"sweep": {"over": over, "points": points}}


def _goodput_job(ctx: _Context) -> tuple[str, str, dict[str, Any]]:
    assert ctx.slo is not None
    plan = GoodputPlan(**ctx.job.spec["goodput"])
    status: str = JobStatus.COMPLETED
    error = ""
    points: list[dict[str, Any]] = []
    while (rate := plan.next_rate()) is not None:
        if _cancelled_now(ctx.job.id):
            status, error = JobStatus.CANCELLED, "cancelled"
            break
        spec = ctx.spec.at_rate(rate)
        workload, result = _measure(ctx, spec, part=len(plan.probes), parts=plan.max_runs)
        verdict = meets(result, ctx.slo)
        run = _store_run(ctx, f"rate {rate:.4g}", rate, spec, workload, result, meets_slo=verdict)
        points.append(_point_json(run, result, verdict))
        status, error = _job_status(result)
        if status != JobStatus.COMPLETED:
            break
        plan.record(SweepPoint(rate, spec, result, verdict))
    best = plan.best
    return (
        status,
        error,
        {
            "goodput": {
                "best_rate_rps": None if best is None else best.value,
                "best_request_goodput": None
                if best is None
                else best.result.summary.get("request_goodput"),
                "reason": error or plan.reason,
                "slo": ctx.slo.to_json(),
                "probes": points,
            }
        },
    )


def _ab_job(ctx: _Context) -> tuple[str, str, dict[str, Any]]:
    ab = ctx.job.spec["ab"]
    sides = (("baseline", ab["baseline_args"]), ("candidate", ab["candidate_args"]))
    workload = ctx.spec.build(ctx.trace)
    outcome = _ab_variants(ctx, sides, workload)
    if isinstance(outcome, str):
        return JobStatus.FAILED, outcome, {}
    runs, switched = outcome
    quality = _ab_quality(ctx, ab, switched)
    stored: dict[str, BenchmarkRun] = {}
    for (name, args), variant_run in zip(sides, runs, strict=True):
        try:
            stored[name] = _store_run(
                ctx, name, None, ctx.spec, workload, variant_run.result,
                engine_args=args, ready_after_s=variant_run.ready_after_s,
                model=ab.get(f"{name}_model"), quant=quality[name]["precision"],
            )  # fmt: skip
        except Exception as exc:  # a bug: say which run it lost; the ones stored stay
            log.exception("A/B job %s: storing the %s run raised", ctx.job.id, name)
            ids = {f"{side}_run_id": run.id for side, run in stored.items()}
            error = f"variant {name!r}: internal error storing its run: {exc!r}"
            return JobStatus.FAILED, error, {"ab": {"label": ab["label"], **ids, **switched}}
    baseline, candidate = (run.result for run in runs)
    measured = compare(baseline, candidate)
    result: dict[str, Any] = {
        "ab": {
            "label": ab["label"],
            "baseline_run_id": stored["baseline"].id,
            "candidate_run_id": stored["candidate"].id,
            "measured": measured,
            "predicted": _predicted_ratios(stored["baseline"], stored["candidate"], measured),
            "quality": {"measured": False, "note": QUALITY_NOT_MEASURED, **quality},
            **switched,
        }
    }
    for result_run in (baseline, candidate):
        status, error = _job_status(result_run)
        if status != JobStatus.COMPLETED:
            return status, error, result
    restore = switched.get("controller", {}).get("restore", {})
    if restore and not restore["served"]:  # measured fine; the node needs a person though
        return JobStatus.COMPLETED, f"restoring the original config: {restore['error']}", result
    return JobStatus.COMPLETED, "", result


def _ab_quality(ctx: _Context, ab: dict[str, Any], switched: dict[str, Any]) -> dict[str, Any]:
    """Each side's checkpoint, precision and quality figure, labelled (`checkpoints`)."""
    model_name = ctx.endpoint.model_ref or ctx.endpoint.deployment.model_id
    env = {**os.environ, **(ctx.endpoint.local_launch or {}).get("env", {})}
    out: dict[str, Any] = {}
    for side in ("baseline", "candidate"):
        model = ab.get(f"{side}_model")
        if ab.get(f"{side}_quant"):
            precision, origin = ab[f"{side}_quant"], "stated in the job"
        elif model is None:
            precision, origin = ctx.endpoint.quant, "the endpoint's precision"
        elif switched.get("switched_by") == "local restart":
            precision = checkpoint_precision(model, env)
            origin = "the checkpoint's config.json"
        else:  # the checkpoint lies on the node, not here
            precision, origin = None, "not stated, and the checkpoint is on the node"
        own = ab.get(f"{side}_quality")
        override = QualityOverride(own["delta_points"], own["source"]) if own else None
        out[side] = {"model": model, **side_quality(model_name, precision, origin, override)}
    return out


def _ab_variants(
    ctx: _Context, sides: tuple[tuple[str, dict[str, Any]], ...], workload: Workload
) -> tuple[list[VariantRun], dict[str, Any]] | str:
    """Each side's run and how the node was switched; why not when it cannot be switched.

    A side naming a checkpoint the bench worker's machine lacks (local restart) fails the job
    before anything stops; through a controller the agent refuses it before stopping.
    """
    if ab_uses_controller(ctx.endpoint):
        try:
            switch = NodeSwitch.hold(
                ctx.endpoint.node,
                apply_timeout_s=float(ctx.job.spec["ab"].get("apply_timeout_s", APPLY_TIMEOUT_S)),
                cancelled=lambda: _cancelled_now(ctx.job.id),
            )
        except AbSwitchError as exc:
            return str(exc)
        runs = _controller_variants(ctx, switch, sides, workload)
        return runs, {"switched_by": "controller", "controller": switch.to_json()}
    if ctx.endpoint.local_launch:
        try:
            return _local_variants(ctx, sides, workload), {"switched_by": "local restart"}
        except CheckpointMissing as exc:
            return str(exc)
    return (
        f"endpoint {ctx.endpoint} has no local launch configuration and node "
        f"{ctx.endpoint.node.hostname} has no agent reporting a controller: there is no way "
        "to switch its configuration"
    )


def _local_variants(
    ctx: _Context, sides: tuple[tuple[str, dict[str, Any]], ...], workload: Workload
) -> list[VariantRun]:
    """Restart the vLLM this worker owns with each variant's args (`endpoint.local_launch`)."""
    launch_conf = dict(ctx.endpoint.local_launch)
    base_args = launch_conf.get("engine_args", [])
    launch = VllmLaunch(
        python=str(launch_conf["python"]),
        model=str(launch_conf["model"]),
        served_name=ctx.endpoint.deployment.served_name,
        port=int(launch_conf["port"]),
        host=str(launch_conf.get("host", "127.0.0.1")),
        engine_args=tuple(
            engine_args_to_argv(base_args) if isinstance(base_args, dict) else base_args
        ),
        env=dict(launch_conf.get("env", {})),
    )
    variants = [
        Variant(name, engine_args_to_argv(args), ctx.job.spec["ab"].get(f"{name}_model"))
        for name, args in sides
    ]
    return run_variants(
        launch, variants, workload,
        log_dir=settings.VAR_DIR / "bench-logs", api=ctx.target.api, limits=ctx.limits,
        options=ctx.options, cancel=_cancel_check(ctx.job.id),
        ready_timeout_s=float(launch_conf.get("ready_timeout_s", LOCAL_READY_TIMEOUT_S)),
    )  # fmt: skip


def _controller_variants(
    ctx: _Context,
    switch: NodeSwitch,
    sides: tuple[tuple[str, dict[str, Any]], ...],
    workload: Workload,
) -> list[VariantRun]:
    """Switch the node to each variant through its controller, measure, restore it always.

    A variant the node cannot serve, a cancel or an unexpected exception ends the A/B: the
    remaining variants are stored unmeasured with the reason (`measure_in_turn`).
    """
    args = dict(sides)
    not_run = partial(unmeasured, ctx.target, workload)

    def measure(part: int, variant: Variant) -> tuple[VariantRun, Stop | None]:
        try:
            ready_after_s = switch.switch_to(variant.name, args[variant.name], variant.model)
        except AbCancelled:
            return VariantRun(variant, not_run(*CANCELLED), None), CANCELLED
        except AbSwitchError as exc:
            why = f"not run: the {variant.name} config did not serve"
            return VariantRun(variant, not_run("failed", str(exc)), None), ("failed", why)
        result = run_benchmark(
            ctx.target, workload, limits=ctx.limits, options=ctx.options,
            cancel=_cancel_check(ctx.job.id), progress=_progress(ctx.job.id, part, len(sides)),
        )  # fmt: skip
        return VariantRun(variant, result, ready_after_s), None

    models = {name: ctx.job.spec["ab"].get(f"{name}_model") for name, _ in sides}
    variants = [
        Variant(name, engine_args_to_argv(engine_args), models[name]) for name, engine_args in sides
    ]
    try:
        return measure_in_turn(
            variants, measure, not_run=not_run, cancel=lambda: _cancelled_now(ctx.job.id)
        )
    finally:
        switch.restore_original()


def _predicted_ratios(
    baseline: BenchmarkRun, candidate: BenchmarkRun, measured: dict[str, Any]
) -> dict[str, Any]:
    """The engine's candidate/baseline ratios next to the measured ones, with their error."""
    base = baseline.predicted.get("figures") or {}
    cand = candidate.predicted.get("figures") or {}
    if not base or not cand:
        return {"error": baseline.predicted.get("error") or candidate.predicted.get("error")}
    out: dict[str, Any] = {
        "unmodelled": sorted(
            set(baseline.predicted.get("unmodelled", []))
            | set(candidate.predicted.get("unmodelled", []))
        )
    }
    for name in ("output_throughput", "median_ttft_ms", "median_tpot_ms", "p99_e2el_ms"):
        b, c, seen = base.get(name), cand.get(name), measured.get(f"{name}_ratio")
        ratio = c / b if isinstance(b, int | float) and isinstance(c, int | float) and b else None
        error = (
            ratio / seen - 1.0
            if ratio is not None and isinstance(seen, int | float) and seen
            else None
        )
        out[f"{name}_ratio"] = {"predicted": ratio, "measured": seen, "error": error}
    return out


def _point_json(run: BenchmarkRun, result: BenchmarkResult, verdict: bool | None) -> dict[str, Any]:
    summary = result.summary
    return {
        "run_id": run.id,
        "value": run.value,
        "status": result.status,
        "output_throughput": summary.get("output_throughput"),
        "request_goodput": summary.get("request_goodput"),
        "slo_attainment": summary.get("slo_attainment"),
        "meets_slo": verdict,
    }


# -- storing a run -------------------------------------------------------------------------
def _store_run(
    ctx: _Context,
    label: str,
    value: float | None,
    spec: WorkloadSpec,
    workload: Workload,
    result: BenchmarkResult,
    *,
    meets_slo: bool | None = None,
    engine_args: dict[str, Any] | None = None,
    ready_after_s: float | None = None,
    model: str | None = None,
    quant: str | None = None,
) -> BenchmarkRun:
    started = datetime.fromtimestamp(result.started_at_unix_s, tz=UTC)
    predicted, errors = _prediction(ctx, workload, result, engine_args or {}, quant)
    config = dict(result.config)
    if ready_after_s is not None:
        config["vllm_ready_after_s"] = ready_after_s
    if model is not None:
        config["model"] = model  # the side's own checkpoint (what --model named)
    with transaction.atomic():
        ctx.sequence += 1
        run = BenchmarkRun.objects.create(
            job=ctx.job,
            sequence=ctx.sequence,
            label=label,
            value=value,
            engine_args=engine_args or {},
            status=result.status,
            error=result.error,
            started_at=started,
            duration_s=result.duration_s,
            workload=spec.to_json(),
            summary=finite_json(dict(result.summary)),
            server_metrics=finite_json(dict(result.server_metrics)),
            metrics_error=result.metrics_error,
            prompts=result.prompts.to_json() if result.prompts else None,
            config=config,
            warnings=list(result.warnings),
            meets_slo=meets_slo,
            gpu_telemetry=finite_json(_gpu_window(ctx.endpoint, started, result.duration_s)),
            predicted=finite_json(predicted),
            prediction_error=finite_json(errors),
        )
        BenchmarkRequest.objects.bulk_create(
            (
                BenchmarkRequest(
                    run=run, index=r.index, status=r.status, scheduled_s=r.scheduled_s,
                    sent_s=r.sent_s, queue_s=r.queue_s, ttft_s=r.ttft_s, tpot_s=r.tpot_s,
                    e2e_s=r.e2e_s, itl_s=list(r.itl_s), prompt_tokens=r.prompt_tokens,
                    output_tokens=r.output_tokens, expected_prompt_tokens=r.expected_prompt_tokens,
                    expected_output_tokens=r.expected_output_tokens,
                    tokens_from_usage=r.tokens_from_usage, http_status=r.http_status,
                    error=r.error[:2000],
                )
                for r in result.requests
            ),
            batch_size=REQUEST_BATCH,
        )  # fmt: skip
    return run


def _prediction(
    ctx: _Context,
    workload: Workload,
    result: BenchmarkResult,
    extra_args: dict[str, Any],
    quant: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's figures for this run's workload on this node, and their error.

    The measurement is what the job exists for: a bug in the engine (anything but the
    `PredictionError` a node the engine cannot describe raises) is logged with its traceback
    and stored as the prediction's error, and the measured run is kept.
    """
    if ctx.engine is None:
        return {"error": "the endpoint does not say its hardware: no prediction"}, {}
    engine = ctx.engine.with_args(extra_args)
    if quant is not None:  # an A/B side serving a checkpoint of another precision
        engine = replace(engine, quant=quant)
    profile, record = calibration_profile_for(hardware=engine.hardware, engine=engine.engine)
    about = {
        "profile_source": profile.source,
        "profile_fit_median_ape": profile.fit_median_ape,
        "calibration_record_id": record.id if record else None,
        "unmodelled": engine.unmodelled,
    }
    try:
        figures = predict(engine.replica(profile), workload)
    except PredictionError as exc:
        return {"error": str(exc), **about}, {}
    except Exception as exc:  # a bug in the engine: keep the measured run, log and say it
        log.exception("benchmark job %s: the engine's prediction raised", ctx.job.id)
        return {"error": f"internal error in the engine's prediction: {exc!r}", **about}, {}
    errors = prediction_errors(figures, result.summary) if result.status != "failed" else {}
    return {"figures": figures, **about}, errors


def _gpu_window(endpoint: BenchmarkEndpoint, start: datetime, duration_s: float) -> dict[str, Any]:
    """What the node's agent reported for its GPUs while the run was measured."""
    gpu_ids = list(endpoint.deployment.gpus.filter(node=endpoint.node).values_list("id", flat=True))
    if not gpu_ids:
        gpu_ids = list(endpoint.node.gpus.values_list("id", flat=True))
    if not gpu_ids:
        return {"gpus": 0, "samples": 0, "note": "the node has no registered GPUs"}
    end = start + timedelta(seconds=max(duration_s, 0.0))
    samples = gpu_samples_in_window(gpu_ids=gpu_ids, start=start, end=end).order_by()
    stats = samples.aggregate(
        samples=Count("ts"),
        util_mean_pct=Avg("util_pct"),
        util_max_pct=Max("util_pct"),
        mem_used_max_bytes=Max("mem_used_bytes"),
        power_mean_w=Avg("power_w"),
        sm_active_mean=Avg("sm_active"),
        tensor_active_mean=Avg("tensor_active"),
    )
    energy = (
        samples.values("gpu_id")
        .annotate(used=Max("energy_j") - Min("energy_j"))
        .values_list("used", flat=True)
    )
    used = [value for value in energy if value is not None]
    stats["energy_j"] = sum(used) if used else None
    stats["gpus"] = len(gpu_ids)
    if not stats["samples"]:
        stats["note"] = "no GPU samples from the node's agent in this window"
    return stats
