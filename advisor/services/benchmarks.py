"""Writes for benchmark jobs: create (validated field by field), cancel; execution is in
`advisor.services.benchmark_runs`, calibration in `advisor.services.calibration`.

Every input error raises `BenchmarkJobError` naming the field (`workload.rate_rps`,
`sweep.values[2]`, `slo.ttft_ms`, ...) before anything is stored. Jobs target only a
registered `BenchmarkEndpoint`; its caps (concurrency, duration, request count) bound what a
job may ask for. A created job is queued on the `bench` queue when the transaction commits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from advisor.benchmarking.prompts import resolve_mode
from advisor.benchmarking.runner import BenchmarkConfigError, RunOptions
from advisor.benchmarking.summary import Slo, SloError
from advisor.benchmarking.sweep import GoodputPlan
from advisor.benchmarking.workloads import WorkloadSpec, WorkloadSpecError
from advisor.engine.catalog import DEFAULT_CATALOG, CatalogError
from advisor.engine.scenario import QualityOverride
from advisor.models import BenchmarkEndpoint, BenchmarkJob, JobKind, JobStatus
from advisor.services.ab_controller import APPLY_TIMEOUT_S, ab_possible
from probes.models import RequestRecord

MAX_SWEEP_POINTS = 20
# Sampling parameters a job may set in each request (anything else could change what is
# measured behind the reader's back, e.g. `stream: false`).
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "min_p", "seed", "repetition_penalty"})
OPTION_KEYS = frozenset({
    "prompt_mode", "ignore_eos", "seed", "warmup_requests", "clip_to_max_model_len",
    "sampling", "calibrate",
})  # fmt: skip
SLO_KEYS = frozenset({"ttft_ms", "tpot_ms", "e2el_ms", "min_attainment"})
AB_SIDES = ("baseline", "candidate")
AB_KEYS = frozenset({
    "label", "apply_timeout_s",
    *(f"{side}_{part}" for side in AB_SIDES for part in ("args", "model", "quant", "quality")),
})  # fmt: skip
# Args an A/B sets itself: the checkpoint goes in ab.<side>_model, and every side is served
# under the endpoint's served model name (what the benchmark client asks for).
AB_RESERVED_ARGS = frozenset({"model", "served_model_name", "host", "port"})
MAX_MODEL_CHARS = 1000


class BenchmarkJobError(ValueError):
    """Invalid job input; `field` names it (dotted into nested objects)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _object(value: Any, field: str, *, required: bool = False) -> dict[str, Any] | None:
    if value is None or value == {}:
        if required:
            raise BenchmarkJobError(field, "required for this kind of job")
        return None
    if not isinstance(value, Mapping):
        raise BenchmarkJobError(field, "expected an object")
    return dict(value)


def _nested(field: str, exc: Exception) -> BenchmarkJobError:
    """`rate_rps: must be > 0` from a spec class -> field `workload.rate_rps`."""
    text = str(exc)
    name, _, message = text.partition(": ")
    if message and name.replace("_", "").replace(".", "").isalnum():
        return BenchmarkJobError(f"{field}.{name}", message)
    return BenchmarkJobError(field, text)


def _no_unknown(data: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BenchmarkJobError(f"{field}.{unknown[0]}", "unknown field")


def _slo(raw: Any) -> dict[str, Any] | None:
    data = _object(raw, "slo")
    if data is None:
        return None
    _no_unknown(data, SLO_KEYS, "slo")
    try:
        return Slo(**data).to_json()
    except (SloError, TypeError) as exc:
        raise _nested("slo", exc) from exc


def _when(value: Any, field: str) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise BenchmarkJobError(field, f"expected an ISO 8601 date-time, got {value!r}")
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)


def _trace(raw: Any, endpoint: BenchmarkEndpoint) -> dict[str, Any]:
    """Replay source: the endpoint's deployment's request records in [start, end)."""
    data = _object(raw, "trace", required=True)
    assert data is not None
    _no_unknown(data, frozenset({"start", "end"}), "trace")
    start, end = _when(data.get("start"), "trace.start"), _when(data.get("end"), "trace.end")
    if end <= start:
        raise BenchmarkJobError("trace.end", "must be after trace.start")
    found = RequestRecord.objects.filter(
        deployment=endpoint.deployment, arrival_ts__gte=start, arrival_ts__lt=end
    ).exists()
    if not found:
        raise BenchmarkJobError(
            "trace",
            f"no request records of {endpoint.deployment.served_name} between {start.isoformat()}"
            f" and {end.isoformat()} (capture them with the agent's proxy or import a trace)",
        )
    return {"start": start.isoformat(), "end": end.isoformat()}


def _sweep(raw: Any, spec: WorkloadSpec) -> dict[str, Any]:
    data = _object(raw, "sweep", required=True)
    assert data is not None
    _no_unknown(data, frozenset({"over", "values"}), "sweep")
    over = data.get("over")
    if over not in ("rate", "concurrency"):
        raise BenchmarkJobError("sweep.over", f"expected rate or concurrency, got {over!r}")
    if over == "rate" and spec.kind == "concurrency":
        raise BenchmarkJobError("sweep.over", "a closed-loop workload has no rate to sweep")
    values = data.get("values")
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_SWEEP_POINTS:
        raise BenchmarkJobError("sweep.values", f"expected 1 to {MAX_SWEEP_POINTS} numbers")
    for index, value in enumerate(values):
        whole = over == "rate" or (isinstance(value, int) and not isinstance(value, bool))
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if not ok or not whole or not math.isfinite(value):
            kind = "a rate > 0" if over == "rate" else "an integer concurrency >= 1"
            raise BenchmarkJobError(f"sweep.values[{index}]", f"expected {kind}, got {value!r}")
    return {"over": over, "values": values}


def _goodput(raw: Any, spec: WorkloadSpec, slo: dict[str, Any] | None) -> dict[str, Any]:
    data = _object(raw, "goodput", required=True)
    assert data is not None
    _no_unknown(data, frozenset({"min_rate_rps", "max_rate_rps", "rel_tol", "max_runs"}), "goodput")
    if slo is None:
        raise BenchmarkJobError("slo", "a goodput search needs an SLO")
    if spec.kind == "concurrency":
        raise BenchmarkJobError("workload.kind", "a goodput search varies the rate: use poisson")
    settings = {"rel_tol": 0.1, "max_runs": 8, **data}
    try:
        GoodputPlan(**settings)
    except (BenchmarkConfigError, TypeError) as exc:
        raise _nested("goodput", exc) from exc
    return settings


def _ab(raw: Any, endpoint: BenchmarkEndpoint) -> dict[str, Any]:
    data = _object(raw, "ab", required=True)
    assert data is not None
    _no_unknown(data, AB_KEYS, "ab")
    if not ab_possible(endpoint):
        raise BenchmarkJobError(
            "ab",
            f"endpoint {endpoint} has no local launch configuration and its node reports no "
            "controller: an A/B restarts vLLM with each configuration, which needs a process "
            "the bench worker may start or a node controller to apply them",
        )
    timeout_s = data.get("apply_timeout_s", APPLY_TIMEOUT_S)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not (1 <= timeout_s <= 24 * 3600)
    ):
        raise BenchmarkJobError("ab.apply_timeout_s", "expected seconds in [1, 86400]")
    sides: dict[str, Any] = {}
    for side in AB_SIDES:
        args = data.get(f"{side}_args", {})
        if not isinstance(args, Mapping):
            raise BenchmarkJobError(f"ab.{side}_args", "expected an object of vLLM engine args")
        for name in args:
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise BenchmarkJobError(f"ab.{side}_args.{name}", "not a vLLM argument name")
            if name in AB_RESERVED_ARGS:
                raise BenchmarkJobError(
                    f"ab.{side}_args.{name}",
                    f"set by the A/B itself (a checkpoint goes in ab.{side}_model; every side "
                    "is served under the endpoint's served model name)",
                )
        sides[f"{side}_args"] = dict(args)
        sides.update(_ab_side_model(data, side))
    label = data.get("label", "")
    if not isinstance(label, str) or len(label) > 120:
        raise BenchmarkJobError("ab.label", "expected text of at most 120 characters")
    return {
        **sides,
        "label": label,
        **({"apply_timeout_s": float(timeout_s)} if "apply_timeout_s" in data else {}),
    }


def _ab_side_model(data: Mapping[str, Any], side: str) -> dict[str, Any]:
    """A side's own checkpoint, its precision and the user's quality figure (all optional)."""
    out: dict[str, Any] = {}
    model = data.get(f"{side}_model")
    if model is not None:
        field = f"ab.{side}_model"
        if not isinstance(model, str) or not model.strip():
            raise BenchmarkJobError(
                field, "expected a checkpoint: a local path or a Hugging Face id (org/name)"
            )
        if model != model.strip() or "\n" in model or len(model) > MAX_MODEL_CHARS:
            raise BenchmarkJobError(
                field, f"expected one line of at most {MAX_MODEL_CHARS} characters, no spaces "
                "around it"
            )  # fmt: skip
        if model.startswith("-"):
            raise BenchmarkJobError(field, "must not start with '-' (vLLM would read a flag)")
        out[f"{side}_model"] = model
    quant = data.get(f"{side}_quant")
    if quant is not None:
        try:
            out[f"{side}_quant"] = DEFAULT_CATALOG.quant(str(quant)).name
        except CatalogError as exc:
            message = str(exc).removeprefix("weight_dtype: ")
            raise BenchmarkJobError(f"ab.{side}_quant", message) from exc
    quality = _object(data.get(f"{side}_quality"), f"ab.{side}_quality")
    if quality is not None:
        field = f"ab.{side}_quality"
        _no_unknown(quality, frozenset({"delta_points", "source"}), field)
        if f"{side}_quant" not in out:
            raise BenchmarkJobError(
                field, f"say which precision the figure is for (ab.{side}_quant)"
            )
        points, source = quality.get("delta_points"), quality.get("source")
        if isinstance(points, bool) or not isinstance(points, int | float):
            raise BenchmarkJobError(f"{field}.delta_points", f"expected a number, got {points!r}")
        if not isinstance(source, str) or not source.strip() or len(source) > 500:
            raise BenchmarkJobError(
                f"{field}.source", "say where the figure comes from (at most 500 characters)"
            )
        try:
            QualityOverride(float(points), source.strip())
        except ValueError as exc:
            raise _nested(field, exc) from exc
        out[f"{side}_quality"] = {"delta_points": float(points), "source": source.strip()}
    return out


def _options(raw: Any, endpoint: BenchmarkEndpoint) -> dict[str, Any]:
    data = _object(raw, "options") or {}
    _no_unknown(data, OPTION_KEYS, "options")
    sampling = _object(data.get("sampling"), "options.sampling") or {}
    _no_unknown(sampling, SAMPLING_KEYS, "options.sampling")
    for name, value in sampling.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchmarkJobError(f"options.sampling.{name}", f"expected a number, got {value!r}")
    for name in ("calibrate", "ignore_eos", "clip_to_max_model_len"):
        if name in data and not isinstance(data[name], bool):
            raise BenchmarkJobError(f"options.{name}", "expected true or false")
    for name in ("seed", "warmup_requests"):
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BenchmarkJobError(f"options.{name}", f"expected an integer >= 0, got {value!r}")
    run = {k: v for k, v in data.items() if k not in ("sampling", "calibrate")}
    try:
        options = RunOptions(**run, extra_body=sampling)
        resolve_mode(endpoint.api, options.prompt_mode)  # type: ignore[arg-type]
    except (BenchmarkConfigError, TypeError, ValueError) as exc:
        raise _nested("options", exc) from exc
    return {**run, "sampling": sampling, "calibrate": bool(data.get("calibrate", False))}


def _cap(value: Any, field: str, limit: int) -> int:
    if value is None:
        return limit
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise BenchmarkJobError(field, f"must be an integer in [1, {limit}] (the endpoint's cap)")
    return value


def benchmark_job_create(
    *,
    user: Any,
    endpoint_id: Any,
    kind: Any,
    workload: Any,
    trace: Any = None,
    sweep: Any = None,
    goodput: Any = None,
    ab: Any = None,
    slo: Any = None,
    options: Any = None,
    max_concurrency: Any = None,
    max_duration_s: Any = None,
) -> BenchmarkJob:
    """Validate, store a queued job and queue it on the `bench` queue when this commits."""
    if isinstance(endpoint_id, bool) or not isinstance(endpoint_id, int):
        raise BenchmarkJobError("endpoint", "expected the id of a registered endpoint")
    endpoint = (
        BenchmarkEndpoint.objects.select_related("node", "deployment")
        .filter(id=endpoint_id)
        .first()
    )
    if endpoint is None:
        raise BenchmarkJobError("endpoint", f"no registered benchmark endpoint {endpoint_id}")
    if kind not in JobKind.values:
        raise BenchmarkJobError("kind", f"expected one of {JobKind.values}, got {kind!r}")
    if not isinstance(workload, Mapping):
        raise BenchmarkJobError("workload", "expected an object")
    try:
        spec = WorkloadSpec.from_json(workload)
    except (WorkloadSpecError, TypeError) as exc:
        raise _nested("workload", exc) from exc
    if spec.num_requests is not None and spec.num_requests > endpoint.max_requests:
        raise BenchmarkJobError(
            "workload.num_requests", f"exceeds the endpoint's cap of {endpoint.max_requests}"
        )
    if spec.kind != "replay" and trace not in (None, {}):
        raise BenchmarkJobError("trace", "only a replay workload takes a trace")
    slo_data = _slo(slo)
    job_spec: dict[str, Any] = {
        "workload": spec.to_json(),
        "trace": _trace(trace, endpoint) if spec.kind == "replay" else None,
        "slo": slo_data,
        "sweep": _sweep(sweep, spec) if kind == JobKind.SWEEP else None,
        "goodput": _goodput(goodput, spec, slo_data) if kind == JobKind.GOODPUT else None,
        "ab": _ab(ab, endpoint) if kind == JobKind.AB else None,
        "options": _options(options, endpoint),
    }
    for name, given in (("sweep", sweep), ("goodput", goodput), ("ab", ab)):
        if job_spec[name] is None and given not in (None, {}):
            raise BenchmarkJobError(name, f"not used by a {kind!r} job")
    with transaction.atomic():
        job = BenchmarkJob.objects.create(
            endpoint=endpoint,
            kind=kind,
            spec=job_spec,
            max_concurrency=_cap(max_concurrency, "max_concurrency", endpoint.max_concurrency),
            max_duration_s=_cap(max_duration_s, "max_duration_s", endpoint.max_duration_s),
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        from advisor.tasks.bench import queue_benchmark_job  # tasks import services, not back

        queue_benchmark_job(job)
    return job


def benchmark_job_cancel(*, job_id: int) -> BenchmarkJob:
    """Cancel a queued job at once, or ask a running one to stop (the worker polls the flag)."""
    now = timezone.now()
    if BenchmarkJob.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, error="cancelled before it started",
        finished_at=now,
    ):  # fmt: skip
        return BenchmarkJob.objects.get(id=job_id)
    if BenchmarkJob.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        cancel_requested=True
    ):
        return BenchmarkJob.objects.get(id=job_id)
    job = BenchmarkJob.objects.filter(id=job_id).first()
    if job is None:
        raise BenchmarkJobError("job", f"no benchmark job {job_id}")
    raise BenchmarkJobError("status", f"job {job_id} already finished ({job.status})")
