"""Command line: `python -m advisor.engine {predict,validate,calibrate,fit-public} ...`.

- `predict`: one configuration and workload -> the serving metrics as JSON.
- `validate CASES.csv [--split train|test]`: per case predicted vs measured and the error,
  then per split and metric the case count, the unmodellable count and the median error
  (`median_ape` counting unmodellable cases as failures, `median_ape_modelled` without
  them), then `median_ape=<x>` over all; unmodellable cases are listed with the reason.
- `calibrate POINTS.csv`: fit a profile to your own benchmark points (columns concurrency,
  input_len, output_len and any of output_tok_s, median_ttft_ms, median_tpot_ms), print the
  fit error and save the profile as JSON.
- `fit-public [CASES.csv]`: refit the built-in GPU profile on published cases (how the shipped
  default was made): on the `split=train` rows when the file has a split column, else on all;
  report the fit error, the per-split/metric errors of the refit profile (the test figures)
  and optionally leave-one-out errors.

Bad input (unknown GPU or model, a model that does not fit, TP above the GPU count,
malformed rows) prints one line naming the field and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from advisor.engine.calibration import MeasuredPoint, fit_cases, fit_points
from advisor.engine.cases import (
    SPLITS,
    Case,
    CaseError,
    ValidationReport,
    engine_scheduler,
    read_cases,
    validate_cases,
)
from advisor.engine.catalog import DEFAULT_CATALOG, CatalogError, resolve_model
from advisor.engine.perf import FITTABLE, CalibrationProfile, ConfigError, Deployment
from advisor.engine.profiles import DEFAULT_PROFILES, ProfileSet, load_profiles, save_profiles
from advisor.engine.results import Slo
from advisor.engine.sim import (
    Replica,
    SchedulerConfig,
    StaticBatchConfig,
    simulate,
    simulate_static,
)
from advisor.engine.workload import (
    Workload,
    WorkloadError,
    closed_loop_workload,
    load_azure_trace,
    resample_workload,
    synthetic_workload,
)

BAD_INPUT = 2
INPUT_ERRORS = (CatalogError, ConfigError, CaseError, WorkloadError)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_deployment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", required=True, help="hardware name, e.g. H100-SXM")
    parser.add_argument("--model", required=True, help="built-in model or a config.json path")
    parser.add_argument("--weight-dtype", default="bf16", help="bf16, fp8, int8, awq-int4, ...")
    parser.add_argument("--kv-dtype", default="auto", help="auto, bf16, fp8")
    parser.add_argument("--tp", type=_positive_int, default=1, help="tensor-parallel size")
    parser.add_argument("--num-gpus", type=_positive_int, default=None, help="GPUs in all")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--max-model-len", type=_positive_int, default=None)
    parser.add_argument(
        "--kv-cache-gib",
        type=_positive_float,
        default=None,
        help="fixed KV space per device (vLLM CPU: VLLM_CPU_KVCACHE_SPACE)",
    )
    parser.add_argument("--engine", default="vllm", help="vllm, sglang or trtllm")
    parser.add_argument("--max-num-seqs", type=_positive_int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=_positive_int, default=None)
    parser.add_argument("--no-chunked-prefill", action="store_true")
    parser.add_argument("--profile", type=Path, default=None, help="profile JSON to use")


def _replica(args: argparse.Namespace) -> tuple[Replica, int]:
    hardware = DEFAULT_CATALOG.gpu(args.gpu)
    num_gpus = args.num_gpus or args.tp
    if args.tp > num_gpus:
        raise ConfigError(f"tp: {args.tp} exceeds --num-gpus {num_gpus}")
    if num_gpus % args.tp:
        raise ConfigError(f"num_gpus: {num_gpus} is not a multiple of tp {args.tp}")
    deployment = Deployment(
        hardware,
        resolve_model(args.model),
        DEFAULT_CATALOG.quant(args.weight_dtype),
        args.kv_dtype,
        args.tp,
        args.gpu_memory_utilization,
        args.max_model_len,
        int(args.kv_cache_gib * 1024**3) if args.kv_cache_gib else None,
    )
    defaults = engine_scheduler(args.engine.lower(), hardware)
    scheduler = SchedulerConfig(
        max_num_seqs=args.max_num_seqs or defaults.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens or defaults.max_num_batched_tokens,
        enable_chunked_prefill=not args.no_chunked_prefill,
    )
    profiles = DEFAULT_PROFILES
    if args.profile:
        profiles = profiles.with_profiles(load_profiles(args.profile))
    profile = profiles.lookup(hardware.name, args.engine)
    return Replica(deployment, scheduler, profile), num_gpus // args.tp


def _workload(args: argparse.Namespace) -> Workload:
    rng = np.random.default_rng(args.seed)
    if args.trace:
        trace = load_azure_trace(args.trace)
        if args.num_requests:
            return resample_workload(trace, rng, num_requests=args.num_requests, rate_rps=args.rate)
        return trace.with_rate(args.rate) if args.rate else trace
    if args.input_len is None or args.output_len is None:
        raise ConfigError("input_len: --input-len and --output-len are required without --trace")
    if args.concurrency:
        return closed_loop_workload(
            num_requests=args.num_requests or max(8 * args.concurrency, 16),
            concurrency=args.concurrency,
            prompt_tokens=args.input_len,
            output_tokens=args.output_len,
            rng=rng,
            range_ratio=args.range_ratio,
        )
    return synthetic_workload(
        rng,
        num_requests=args.num_requests or 1000,
        rate_rps=args.rate or math.inf,
        prompt_tokens=args.input_len,
        output_tokens=args.output_len,
        burstiness=args.burstiness,
        range_ratio=args.range_ratio,
    )


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def cmd_predict(args: argparse.Namespace) -> int:
    replica, replicas = _replica(args)
    workload = _workload(args)
    slo = Slo(
        ttft_s=args.slo_ttft_ms / 1000 if args.slo_ttft_ms else None,
        tpot_s=args.slo_tpot_ms / 1000 if args.slo_tpot_ms else None,
    )
    if args.static_batch:
        batch = StaticBatchConfig(args.static_batch, args.static_timeout_s)
        result = simulate_static(replica, workload, batch)
    else:
        result = simulate(replica, workload)
    metrics = result.metrics(slo).to_dict()
    output = {
        "deployment": {
            "gpu": replica.deployment.hardware.name,
            "model": replica.deployment.model.name,
            "weight_dtype": replica.deployment.quant.name,
            "kv_dtype": replica.deployment.kv_dtype,
            "tensor_parallel": replica.deployment.tensor_parallel,
            "replicas": replicas,
            "kv_capacity_tokens": replica.memory.kv_capacity_tokens,
        },
        "scheduler": replica.scheduler.as_vllm_args(),
        "profile": replica.profile.to_dict(),
        "workload": {
            "name": workload.name,
            "num_requests": workload.num_requests,
            "max_concurrency": workload.max_concurrency,
        },
        "replica_metrics": metrics,
        "system": {
            "output_throughput_tok_s": metrics["output_throughput_tok_s"] * replicas,  # type: ignore[operator]
            "request_throughput_rps": metrics["request_throughput_rps"] * replicas,  # type: ignore[operator]
            "cost_usd_per_hour": replica.deployment.hardware.price_usd_per_hour
            * replica.deployment.tensor_parallel
            * replicas,
        },
    }
    print(json.dumps(_json_safe(output), indent=2))
    return 0


def _profiles(path: Path | None) -> ProfileSet:
    return DEFAULT_PROFILES.with_profiles(load_profiles(path)) if path else DEFAULT_PROFILES


def _select_split(cases: list[Case], split: str | None) -> list[Case]:
    if split is None:
        return cases
    chosen = [case for case in cases if case.split == split]
    if not chosen:
        raise CaseError(f"--split {split}: no case has split {split}")
    return chosen


def _print_groups(report: ValidationReport, label: str = "") -> None:
    """One line per split and metric: counts and median error (all / modelled only); then
    per split the median of each metric family (`public_<split>_median_ape_<family>`), each
    source's, and the median over sources of theirs (`public_<split>_balanced_...`)."""
    for group in report.groups():
        print(f"{label}split={group.split} metric={group.metric} cases={group.cases} "
              f"unmodellable={group.unmodellable} median_ape={group.median_ape:.4f} "
              f"median_ape_modelled={group.median_ape_modelled:.4f}")  # fmt: skip
    for split in sorted({p.case.split or "none" for p in report.predictions}):
        families = " ".join(
            f"public_{split}_median_ape_{family}={value:.4f}"
            for family, value in report.family_medians(split).items()
        )
        print(f"{label}{families} public_{split}_cases_unmodellable="
              f"{report.unmodellable_count(split)}")  # fmt: skip
        for source, medians in report.source_family_medians(split).items():
            shown = " ".join(f"{family}={value:.4f}" for family, value in medians.items())
            print(f"{label}split={split} source={source!r} {shown}")
        balanced = " ".join(
            f"public_{split}_balanced_median_ape_{family}={value:.4f}"
            for family, value in report.balanced_family_medians(split).items()
        )
        print(f"{label}{balanced}")


def cmd_validate(args: argparse.Namespace) -> int:
    cases = _select_split(read_cases(args.cases), args.split)
    report = validate_cases(cases, _profiles(args.profile))
    print(f"{'case':30} {'metric':15} {'measured':>12} {'predicted':>12} {'error':>8}")
    for prediction in report.predictions:
        case = prediction.case
        if prediction.predicted is None:
            print(f"{case.id:30} {case.metric:15} {case.value:12.6g} {'-':>12} {'FAIL':>8}  "
                  f"unmodellable: {prediction.reason}")  # fmt: skip
            continue
        signed = (prediction.predicted - case.value) / case.value
        note = f"  ({'; '.join(prediction.assumptions)})" if prediction.assumptions else ""
        print(f"{case.id:30} {case.metric:15} {case.value:12.6g} {prediction.predicted:12.6g} "
              f"{signed:+8.1%}{note}")  # fmt: skip
    _print_groups(report)
    print(
        f"cases={len(report.predictions)} unmodellable={len(report.failures)} (counted as failures)"
    )
    print(f"median_ape={report.median_ape:.4f}")
    if args.fail_above is not None and not report.median_ape <= args.fail_above:
        return 1
    return 0


POINT_COLUMNS = ("concurrency", "input_len", "output_len")
POINT_VALUES = {
    "output_tok_s": ("output_tok_per_s", 1.0),
    "median_ttft_ms": ("median_ttft_s", 1e-3),
    "median_tpot_ms": ("median_tpot_s", 1e-3),
}


def read_points(path: Path) -> list[MeasuredPoint]:
    """Read calibration points; errors name the line and column."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"points: no such file {path}") from None
    reader = csv.DictReader(lines)
    header = [name.strip() for name in reader.fieldnames or []]
    absent = [name for name in POINT_COLUMNS if name not in header]
    if absent or not any(name in header for name in POINT_VALUES):
        raise ConfigError(
            f"{path}: columns {list(POINT_COLUMNS)} and at least one of {list(POINT_VALUES)} "
            f"are required; missing {absent}"
        )
    reader.fieldnames = header
    points = []
    for row in reader:
        where = f"{path} line {reader.line_num}"
        fields: dict[str, object] = {}
        for column, name in zip(
            POINT_COLUMNS, ("concurrency", "input_tokens", "output_tokens"), strict=True
        ):
            try:
                fields[name] = int((row.get(column) or "").strip())
            except ValueError:
                raise ConfigError(f"{where}: column {column} must be an integer") from None
        for column, (name, scale) in POINT_VALUES.items():
            text = (row.get(column) or "").strip()
            if text:
                try:
                    fields[name] = float(text) * scale
                except ValueError:
                    raise ConfigError(f"{where}: column {column} must be a number") from None
        try:
            points.append(MeasuredPoint(**fields))  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not points:
        raise ConfigError(f"{path}: no points")
    return points


def cmd_calibrate(args: argparse.Namespace) -> int:
    replica, _ = _replica(args)
    points = read_points(args.points)
    fit = tuple(args.fit.split(",")) if args.fit else ("step_overhead_s", "seq_overhead_s")
    start = dataclasses.replace(
        replica.profile, hardware=replica.deployment.hardware.name, engine=args.engine.lower()
    )
    result = fit_points(
        deployment=replica.deployment,
        scheduler=replica.scheduler,
        points=points,
        start=start,
        fit=fit,
        source=f"calibrate {args.points.name}",
    )
    for error in result.errors:
        print(f"{error.label:40} measured {error.measured:12.6g} fitted {error.predicted:12.6g} "
              f"error {error.ape:7.2%}")  # fmt: skip
    print(json.dumps(result.profile.to_dict(), indent=2))
    print(f"fit_median_ape={result.median_ape:.4f} fit_mean_ape={result.mean_ape:.4f}")
    if args.out:
        save_profiles(args.out, [result.profile])
        print(f"saved {args.out}")
    return 0


# Bandwidth efficiency is not fitted: 0.9 is the copy bandwidth measured on an H100 (3.0 of
# 3.35 TB/s) and an H200 (4.3 of 4.8 TB/s) in this workplace (PERF_MODEL.md). Fitting three
# parameters on ten cases generalises better (leave-one-out) than fitting all seven.
PUBLIC_START = CalibrationProfile(
    bw_efficiency=0.9,
    compute_efficiency=0.5,
    step_overhead_s=2e-3,
    seq_overhead_s=0.0,
    layer_overhead_s=0.0,
    allreduce_latency_s=2e-5,
    overlap=0.0,
    api_latency_s=1e-2,
    v0_step_overhead_s=2e-3,
    v0_seq_overhead_s=1e-4,
    source="fit-public start",
)
PUBLIC_FIT = (
    "compute_efficiency",
    "step_overhead_s",
    "allreduce_latency_s",
    "api_latency_s",
    "v0_step_overhead_s",
    "v0_seq_overhead_s",
)


def public_fit_starts(start: CalibrationProfile) -> tuple[CalibrationProfile, ...]:
    """Extra starting points so the fit does not stop in a poor local minimum."""
    return (
        dataclasses.replace(start, compute_efficiency=0.3, step_overhead_s=5e-3),
        dataclasses.replace(start, compute_efficiency=0.7, step_overhead_s=5e-4),
    )


def cmd_fit_public(args: argparse.Namespace) -> int:
    cases = read_cases(args.cases)
    # a file with a split fits on its train rows only; one without (the original format) on all
    split = any(case.split is not None for case in cases)
    train = [case for case in cases if case.split == "train"] if split else cases
    if not train:
        raise CaseError(f"{args.cases}: no case has split train")
    print(f"fitting on {len(train)} of {len(cases)} cases" + (" (split=train)" if split else ""))
    result = fit_cases(
        train,
        start=PUBLIC_START,
        fit=PUBLIC_FIT,
        starts=public_fit_starts(PUBLIC_START),
        source=f"fit-public {Path(args.cases).name}" + (" (train split)" if split else ""),
    )
    for error in result.errors:
        print(f"{error.label:30} measured {error.measured:12.6g} fitted {error.predicted:12.6g} "
              f"error {error.ape:7.2%}")  # fmt: skip
    print(json.dumps(result.profile.to_dict(), indent=2))
    print(f"fit_median_ape={result.median_ape:.4f} fit_mean_ape={result.mean_ape:.4f}")
    fitted = ProfileSet((result.profile,))
    if split:
        _print_groups(validate_cases(cases, fitted), label="fitted ")
        test = validate_cases([case for case in cases if case.split == "test"], fitted)
        if test.predictions:
            print(f"test_cases={len(test.predictions)} test_unmodellable={len(test.failures)} "
                  f"test_median_ape={test.median_ape:.4f}")  # fmt: skip
    if args.leave_one_out:
        apes = []
        for held in result.errors:
            rest = [case for case in train if case.id != held.label]
            refit = fit_cases(rest, start=result.profile, fit=PUBLIC_FIT,
                              starts=public_fit_starts(PUBLIC_START))  # fmt: skip
            alone = [case for case in train if case.id == held.label]
            apes.append(validate_cases(alone, ProfileSet((refit.profile,))).predictions[0].ape)
            print(f"leave-one-out {held.label:30} error {apes[-1]:7.2%}")
        print(
            f"loo_median_ape={float(np.median(apes)):.4f} loo_mean_ape={float(np.mean(apes)):.4f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m advisor.engine", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="simulate one configuration, print JSON")
    _add_deployment_args(predict)
    predict.add_argument("--input-len", type=_positive_int)
    predict.add_argument("--output-len", type=_positive_int)
    predict.add_argument("--range-ratio", type=float, default=0.0)
    predict.add_argument("--concurrency", type=_positive_int, help="closed loop of N clients")
    predict.add_argument("--rate", type=_positive_float, help="requests per second (open loop)")
    predict.add_argument("--burstiness", type=_positive_float, default=1.0)
    predict.add_argument("--num-requests", type=_positive_int)
    predict.add_argument("--trace", type=Path, help="Azure LLM inference trace CSV")
    predict.add_argument("--seed", type=int, default=0)
    predict.add_argument("--slo-ttft-ms", type=_positive_float)
    predict.add_argument("--slo-tpot-ms", type=_positive_float)
    predict.add_argument("--static-batch", type=_positive_int, help="static batching baseline")
    predict.add_argument("--static-timeout-s", type=float, default=1.0)
    predict.set_defaults(handler=cmd_predict)

    validate = commands.add_parser("validate", help="predict published cases, report errors")
    validate.add_argument("cases", type=Path)
    validate.add_argument("--profile", type=Path, default=None)
    validate.add_argument("--fail-above", type=float, default=None,
                          help="exit 1 when median_ape exceeds this")  # fmt: skip
    validate.add_argument("--split", choices=SPLITS, default=None,
                          help="only the cases of this split")  # fmt: skip
    validate.set_defaults(handler=cmd_validate)

    calibrate = commands.add_parser("calibrate", help="fit a profile to benchmark points")
    _add_deployment_args(calibrate)
    calibrate.add_argument("points", type=Path)
    calibrate.add_argument(
        "--fit", default=None, help=f"comma-separated parameters, from {','.join(FITTABLE)}"
    )
    calibrate.add_argument("--out", type=Path, default=None)
    calibrate.set_defaults(handler=cmd_calibrate)

    public = commands.add_parser("fit-public", help="refit the built-in GPU profile")
    public.add_argument("cases", type=Path, nargs="?",
                        default=Path(__file__).parent / "data" / "public_cases.csv")  # fmt: skip
    public.add_argument("--leave-one-out", action="store_true")
    public.set_defaults(handler=cmd_fit_public)

    from advisor.engine.assess_cli import add_assess_command  # engine II: plans (issue 5)

    add_assess_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
