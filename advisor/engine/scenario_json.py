"""JSON for scenarios: `Scenario.to_dict` / `from_dict` and `load_scenario` for files.

`scenario_from_dict` checks every field and raises `ScenarioError` with the path of the first
bad value; unknown fields are errors (a typo must not silently fall back to a default). Fields
left out take defaults, and SLO and autoscaling defaults are listed in their `defaulted`.
`load_scenario(path)` also resolves a sample given as a trace reference and generated loads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from advisor.engine.perf import CalibrationProfile, ConfigError
from advisor.engine.scenario import (
    AUTOSCALING_DEFAULTS,
    SCENARIO_VERSION,
    SLO_FIELDS,
    AutoscalingSpec,
    DeploymentSpec,
    EngineArgs,
    GpuKindChoice,
    LoadShape,
    Options,
    PowerEntry,
    PriceEntry,
    QualityOverride,
    Scenario,
    ScenarioError,
    SloSpec,
    SpecCandidate,
    SpecDecodeCounters,
    SpeculativeSpec,
    WorkloadSpec,
    default_autoscaling,
    diurnal_load,
)
from advisor.engine.workload import PrefixBlocks, Workload, WorkloadError

# --- serialisation ----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Dataclass / array / mapping -> JSON types (floats kept as Python floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Workload):
        out: dict[str, Any] = {
            "name": value.name,
            "arrival_s": value.arrival_s.tolist(),
            "prompt_tokens": value.prompt_tokens.tolist(),
            "output_tokens": value.output_tokens.tolist(),
        }
        if value.prefix is not None:
            out["prefix"] = {
                "block_tokens": value.prefix.block_tokens,
                "hashes": value.prefix.hashes.tolist(),
                "offsets": value.prefix.offsets.tolist(),
            }
        return out
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    out = cast(dict[str, Any], _plain(scenario))
    out["version"] = SCENARIO_VERSION
    return out


def _array_digest(array: npt.NDArray[Any]) -> str:
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return f"sha256:{array.dtype.name}:{hashlib.sha256(data.tobytes()).hexdigest()}"


def scenario_digest(scenario: Scenario) -> str:
    """SHA-256 of the canonical JSON with each array replaced by the SHA-256 of its bytes.

    Equal scenarios (and a scenario and its JSON round trip) have equal digests; hashing the
    arrays' bytes instead of their decimal text keeps this fast for million-request samples.
    """

    def swap(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return _array_digest(value)
        if isinstance(value, Workload):
            out: dict[str, Any] = {
                "name": value.name,
                "arrival_s": _array_digest(value.arrival_s),
                "prompt_tokens": _array_digest(value.prompt_tokens),
                "output_tokens": _array_digest(value.output_tokens),
            }
            if value.prefix is not None:
                out["prefix"] = {
                    "block_tokens": value.prefix.block_tokens,
                    "hashes": _array_digest(value.prefix.hashes),
                    "offsets": _array_digest(value.prefix.offsets),
                }
            return out
        if hasattr(value, "__dataclass_fields__"):
            return {f.name: swap(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, Mapping):
            return {str(k): swap(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [swap(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    text = json.dumps(
        {"version": SCENARIO_VERSION, **swap(scenario)}, sort_keys=True, allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


T = TypeVar("T")


class _Obj:
    """A JSON object being read: typed getters that name the path, and unknown-key checks."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(path, f"must be an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def get(self, key: str, kind: Callable[[Any, str], T], default: T | None = None) -> T:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is None:
                raise ScenarioError(self.sub(key), "required")
            return default
        return kind(self.data[key], self.sub(key))

    def opt(self, key: str, kind: Callable[[Any, str], T]) -> T | None:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            return None
        return kind(self.data[key], self.sub(key))

    def given(self, kinds: Iterable[tuple[str, Callable[[Any, str], Any]]]) -> dict[str, Any]:
        """The optional fields of `kinds` that are present, read in order (absent ones left out)."""
        out: dict[str, Any] = {}
        for key, kind in kinds:
            value = self.opt(key, kind)
            if value is not None:
                out[key] = value
        return out

    def done(self, extra: Sequence[str] = ()) -> None:
        unknown = sorted(set(self.data) - self.used - set(extra))
        if unknown:
            known = sorted(self.used)
            raise ScenarioError(self.sub(unknown[0]), f"unknown field; known: {known}")

    def build(self, cls: Callable[..., T], **kwargs: Any) -> T:
        self.done()
        try:
            return cls(**kwargs)
        except ScenarioError as exc:
            raise exc.at(self.path) from None


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(path, f"must be a string, got {type(value).__name__}")
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(path, f"must be an integer, got {value!r}")
    return value


def _num(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(path, f"must be a number, got {value!r}")
    return float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(path, f"must be true or false, got {value!r}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(path, f"must be a list, got {type(value).__name__}")
    return value


def _tuple_of(reader: Callable[[Any, str], T]) -> Callable[[Any, str], tuple[T, ...]]:
    """A reader of a JSON list whose items `reader` reads (errors name the item's index)."""

    def read(value: Any, path: str) -> tuple[T, ...]:
        return tuple(reader(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path)))

    return read


def _dict_of(reader: Callable[[Any, str], T]) -> Callable[[Any, str], dict[str, T]]:
    """A reader of a JSON object whose values `reader` reads (errors name the key)."""

    def read(value: Any, path: str) -> dict[str, T]:
        obj = _Obj(value, path)
        return {key: reader(item, obj.sub(key)) for key, item in obj.data.items()}

    return read


_strs = _tuple_of(_str)


def _numbers(value: Any, path: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
    items = _list(value, path)
    try:
        out = np.array(items, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        out = None
    if out is None or out.ndim != 1 or len(items) != out.shape[0]:
        for index, item in enumerate(items):
            ok = isinstance(item, int | float) and not isinstance(item, bool)
            if dtype is np.int64:
                ok = ok and float(item) == int(item)
            if not ok:
                raise ScenarioError(f"{path}[{index}]", f"must be a number, got {item!r}")
        raise ScenarioError(path, "must be a flat list of numbers")
    if dtype is np.int64 and any(isinstance(item, float) for item in items):
        bad = next(i for i, item in enumerate(items) if isinstance(item, float))
        raise ScenarioError(f"{path}[{bad}]", f"must be an integer, got {items[bad]!r}")
    return out


def _floats(value: Any, path: str) -> npt.NDArray[np.float64]:
    return _numbers(value, path, np.float64)


def _ints(value: Any, path: str) -> npt.NDArray[np.int64]:
    return _numbers(value, path, np.int64)


def _slo(value: Any, path: str) -> SloSpec:
    obj = _Obj(value, path)
    given = obj.given((key, _num) for key in SLO_FIELDS)
    stored = obj.opt("defaulted", _strs) or ()
    defaulted = tuple(name for name in SLO_FIELDS if name not in given or name in stored)
    min_replicas = obj.opt("min_replicas", _int)
    return obj.build(SloSpec, **given, defaulted=defaulted, min_replicas=min_replicas)


def _speculative(value: Any, path: str) -> SpeculativeSpec:
    obj = _Obj(value, path)
    return obj.build(
        SpeculativeSpec,
        method=obj.get("method", _str),
        num_speculative_tokens=obj.get("num_speculative_tokens", _int),
        model=obj.opt("model", _str),
        prompt_lookup_max=obj.opt("prompt_lookup_max", _int),
    )


def _candidate(value: Any, path: str) -> SpecCandidate:
    obj = _Obj(value, path)
    return obj.build(SpecCandidate, method=obj.get("method", _str), model=obj.opt("model", _str))


def _counters(value: Any, path: str) -> SpecDecodeCounters:
    obj = _Obj(value, path)
    return obj.build(
        SpecDecodeCounters,
        method=obj.get("method", _str),
        num_speculative_tokens=obj.get("num_speculative_tokens", _int),
        num_drafts=obj.get("num_drafts", _int),
        num_draft_tokens=obj.get("num_draft_tokens", _int),
        num_accepted_tokens=obj.get("num_accepted_tokens", _int),
    )


def _engine_args(value: Any, path: str) -> EngineArgs:
    obj = _Obj(value, path)
    defaults = EngineArgs()
    return obj.build(
        EngineArgs,
        max_num_seqs=obj.opt("max_num_seqs", _int),
        max_num_batched_tokens=obj.opt("max_num_batched_tokens", _int),
        enable_chunked_prefill=obj.get(
            "enable_chunked_prefill", _bool, defaults.enable_chunked_prefill
        ),
        gpu_memory_utilization=obj.get(
            "gpu_memory_utilization", _num, defaults.gpu_memory_utilization
        ),
        max_model_len=obj.opt("max_model_len", _int),
        kv_cache_dtype=obj.get("kv_cache_dtype", _str, defaults.kv_cache_dtype),
        block_size=obj.get("block_size", _int, defaults.block_size),
        speculative_config=obj.opt("speculative_config", _speculative),
        enable_prefix_caching=obj.get(
            "enable_prefix_caching", _bool, defaults.enable_prefix_caching
        ),
        kv_offload_gib=obj.get("kv_offload_gib", _num, defaults.kv_offload_gib),
    )


def _sample(value: Any, path: str) -> Workload:
    obj = _Obj(value, path)
    if obj.has("trace"):
        raise ScenarioError(
            obj.sub("trace"), "trace references are resolved by load_scenario(path), not from_json"
        )
    arrival = obj.get("arrival_s", _floats)
    prompt = obj.get("prompt_tokens", _ints)
    output = obj.get("output_tokens", _ints)
    name = obj.get("name", _str, "sample")
    prefix = obj.opt("prefix", _prefix_blocks)
    obj.done()
    try:
        return Workload(arrival, prompt, output, None, name, prefix)
    except WorkloadError as exc:
        text = str(exc)
        head = text.split(":", 1)[0]
        if head in ("arrival_s", "prompt_tokens", "output_tokens", "prefix.hashes"):
            raise ScenarioError(f"{path}.{head}", text.split(":", 1)[1].strip()) from None
        raise ScenarioError(path, text) from None


def _prefix_blocks(value: Any, path: str) -> PrefixBlocks:
    """A sample's prompt block hashes: `{"block_tokens", "hashes", "offsets"}`."""
    obj = _Obj(value, path)
    block_tokens = obj.get("block_tokens", _int)
    hashes = obj.get("hashes", _ints)
    offsets = obj.get("offsets", _ints)
    obj.done()
    try:
        return PrefixBlocks(block_tokens, hashes, offsets)
    except WorkloadError as exc:
        head, _, rest = str(exc).partition(":")
        field = head.removeprefix("prefix.")
        raise ScenarioError(f"{path}.{field}", rest.strip()) from None


def _load(value: Any, path: str) -> LoadShape:
    obj = _Obj(value, path)
    if obj.has("diurnal"):
        raise ScenarioError(
            obj.sub("diurnal"), "generated loads are resolved by load_scenario(path), not from_json"
        )
    return obj.build(
        LoadShape,
        rate_rps=obj.get("rate_rps", _floats),
        step_s=obj.get("step_s", _num, 60.0),
        start_utc=obj.get("start_utc", _str, ""),
    )


def _workload(value: Any, path: str) -> WorkloadSpec:
    obj = _Obj(value, path)
    return obj.build(
        WorkloadSpec,
        sample=obj.get("sample", _sample),
        load=obj.opt("load", _load),
        source=obj.get("source", _str, ""),
    )


def _autoscaling(value: Any, path: str) -> AutoscalingSpec:
    obj = _Obj(value, path)
    base = AutoscalingSpec()
    defaulted = list(obj.opt("defaulted", _strs) or ())
    kinds = (
        ("enabled", _bool),
        ("min_replicas", _int),
        ("max_replicas", _int),
        ("metric", _str),
        ("target", _num),
        ("scale_up_stabilization_s", _num),
        ("scale_down_stabilization_s", _num),
        ("sync_period_s", _num),
        ("cold_start_s", _num),
        ("load_bandwidth_bytes_per_s", _num),
        ("startup_overhead_s", _num),
    )
    kwargs = obj.given(kinds)
    for name, _ in kinds:
        if name not in kwargs and name in AUTOSCALING_DEFAULTS and name not in defaulted:
            defaulted.append(name)
    kwargs.setdefault("enabled", base.enabled)
    return obj.build(AutoscalingSpec, **kwargs, defaulted=tuple(defaulted))


def _autoscaling_default() -> AutoscalingSpec:
    return default_autoscaling()


def _quality(value: Any, path: str) -> QualityOverride:
    obj = _Obj(value, path)
    return obj.build(
        QualityOverride,
        delta_points=obj.get("delta_points", _num),
        source=obj.get("source", _str),
    )


def _deployment(value: Any, path: str) -> DeploymentSpec:
    obj = _Obj(value, path)
    overrides = obj.opt("quality_overrides", _dict_of(_quality)) or {}
    candidates = obj.opt("speculative_candidates", _tuple_of(_candidate))
    return obj.build(
        DeploymentSpec,
        name=obj.get("name", _str),
        model=obj.get("model", _str),
        hardware=obj.get("hardware", _str),
        workload=obj.get("workload", _workload),
        model_path=obj.get("model_path", _str, ""),
        weight_dtype=obj.get("weight_dtype", _str, "bf16"),
        tensor_parallel=obj.get("tensor_parallel", _int, 1),
        replicas=obj.get("replicas", _int, 1),
        engine_args=obj.get("engine_args", _engine_args, EngineArgs()),
        batching=obj.get("batching", _str, "continuous"),
        static_batch_size=obj.get("static_batch_size", _int, 32),
        static_timeout_s=obj.get("static_timeout_s", _num, 1.0),
        slo=obj.get("slo", _slo, SloSpec(defaulted=SLO_FIELDS)),
        autoscaling=obj.get("autoscaling", _autoscaling, _autoscaling_default()),
        spec_decode=obj.opt("spec_decode", _counters),
        speculative_candidates=candidates or (),
        quality_overrides=overrides,
        gpu_kinds=obj.get("gpu_kinds", _gpu_kinds, GpuKindChoice()),
        routing=obj.get("routing", _str, "round_robin"),
    )


def _gpu_kinds(value: Any, path: str) -> GpuKindChoice:
    obj = _Obj(value, path)
    return obj.build(
        GpuKindChoice,
        pin=obj.opt("pin", _strs) or (),
        exclude=obj.opt("exclude", _strs) or (),
    )


def _price(value: Any, path: str) -> PriceEntry:
    obj = _Obj(value, path)
    return obj.build(
        PriceEntry,
        usd_per_gpu_hour=obj.get("usd_per_gpu_hour", _num),
        source=obj.get("source", _str),
        defaulted=obj.get("defaulted", _bool, False),
        max_gpus=obj.opt("max_gpus", _int),
        reserved_usd_per_gpu_hour=obj.opt("reserved_usd_per_gpu_hour", _num),
        spot_usd_per_gpu_hour=obj.opt("spot_usd_per_gpu_hour", _num),
    )


def _power(value: Any, path: str) -> PowerEntry:
    obj = _Obj(value, path)
    return obj.build(
        PowerEntry,
        idle_w=obj.get("idle_w", _num),
        max_w=obj.get("max_w", _num),
        source=obj.get("source", _str),
    )


def _profile(value: Any, path: str) -> CalibrationProfile:
    obj = _Obj(value, path)
    try:
        return CalibrationProfile.from_dict(dict(obj.data))
    except ConfigError as exc:
        text = str(exc).removeprefix("profile")
        if text.startswith("."):
            name, _, message = text[1:].partition(":")
            raise ScenarioError(f"{path}.{name}", message.strip()) from None
        raise ScenarioError(path, text.lstrip(": ")) from None
    except TypeError as exc:
        raise ScenarioError(path, str(exc)) from None


def _options(value: Any, path: str) -> Options:
    obj = _Obj(value, path)
    base = Options()
    return obj.build(
        Options,
        strategies=obj.opt("strategies", _strs),
        seed=obj.get("seed", _int, base.seed),
        hours_per_month=obj.get("hours_per_month", _num, base.hours_per_month),
        sim_requests=obj.get("sim_requests", _int, base.sim_requests),
        max_tensor_parallel=obj.get("max_tensor_parallel", _int, base.max_tensor_parallel),
        engine=obj.get("engine", _str, base.engine),
        hardware_moves=obj.get("hardware_moves", _bool, base.hardware_moves),
    )


def scenario_from_dict(data: object) -> Scenario:
    obj = _Obj(data, "")
    version = obj.get("version", _int, SCENARIO_VERSION)
    if version != SCENARIO_VERSION:
        raise ScenarioError(
            "version", f"unsupported {version}; this engine reads {SCENARIO_VERSION}"
        )
    deployments = obj.get("deployments", _tuple_of(_deployment))
    models_raw = obj.opt("models", lambda v, p: _Obj(v, p))
    models: dict[str, dict[str, Any]] = {}
    if models_raw is not None:
        for key, item in models_raw.data.items():
            if not isinstance(item, dict):
                raise ScenarioError(models_raw.sub(key), "must be a config.json object")
            models[key] = item
    return obj.build(
        Scenario,
        deployments=deployments,
        prices=obj.opt("prices", _dict_of(_price)) or {},
        power=obj.opt("power", _dict_of(_power)) or {},
        profiles=obj.opt("profiles", _tuple_of(_profile)) or (),
        models=models,
        options=obj.get("options", _options, Options()),
        name=obj.get("name", _str, "scenario"),
    )


# --- files and generated loads ----------------------------------------------------------------


def _resolve_path(raw: str, base: Path) -> Path:
    candidate = Path(raw)
    if candidate.is_absolute():
        return candidate
    for root in (base, Path.cwd()):
        if (root / candidate).exists():
            return root / candidate
    return base / candidate


def _resolve_sample(value: Any, path: str, base: Path) -> Any:
    from advisor.engine.workload import load_azure_trace, resample_workload

    obj = _Obj(value, path)
    if not obj.has("trace"):
        return value
    trace = _resolve_path(obj.get("trace", _str), base)
    fmt = obj.get("format", _str, "azure")
    if fmt != "azure":
        raise ScenarioError(obj.sub("format"), f"unknown {fmt!r}; known: ['azure']")
    count = obj.opt("num_requests", _int)
    seed = obj.get("seed", _int, 0)
    rate = obj.opt("rate_rps", _num)
    obj.done()
    try:
        workload = load_azure_trace(trace)
        if count is not None or rate is not None:
            workload = resample_workload(
                workload,
                np.random.default_rng(seed),
                num_requests=count if count is not None else workload.num_requests,
                rate_rps=rate,
            )
    except WorkloadError as exc:
        raise ScenarioError(obj.sub("trace"), str(exc)) from None
    return _plain(workload)


def _resolve_load(value: Any, path: str) -> Any:
    obj = _Obj(value, path)
    if not obj.has("diurnal"):
        return value
    spec = _Obj(obj.get("diurnal", lambda v, p: v), obj.sub("diurnal"))
    kwargs: dict[str, Any] = {
        "days": spec.get("days", _num),
        "mean_rps": spec.get("mean_rps", _num),
    }
    kwargs.update(
        spec.given((key, _num) for key in ("peak_to_trough", "peak_hour_utc", "weekend_factor"))
    )
    window = spec.opt("active_hours_utc", _tuple_of(_num))
    if window is not None:
        if len(window) != 2:
            raise ScenarioError(spec.sub("active_hours_utc"), "must be [start_hour, end_hour]")
        kwargs["active_hours_utc"] = (window[0], window[1])
    weekday = spec.opt("start_weekday", _int)
    if weekday is not None:
        kwargs["start_weekday"] = weekday
    seed = spec.opt("noise_seed", _int)
    spec.done()
    kwargs["start_utc"] = obj.get("start_utc", _str, "")
    kwargs["step_s"] = obj.get("step_s", _num, 60.0)
    obj.done()
    try:
        shape = diurnal_load(None if seed is None else np.random.default_rng(seed), **kwargs)
    except ScenarioError as exc:
        raise exc.at(spec.path) from None
    return _plain(shape)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file, resolving trace references and generated loads (paths relative to it).

    A deployment's `workload.sample` may be `{"trace": FILE, "format": "azure",
    "num_requests": N, "seed": S, "rate_rps": R}` (the trace bootstrapped with
    `resample_workload`), and `workload.load` may be `{"diurnal": {"days": 7, "mean_rps": 4,
    "peak_to_trough": 5, "weekend_factor": 0.5, "noise_seed": 1}}`.
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise ScenarioError("", f"no such file {source}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError("", f"{source} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("deployments"), list):
        base = source.resolve().parent
        for index, item in enumerate(data["deployments"]):
            if not isinstance(item, dict) or not isinstance(item.get("workload"), dict):
                continue
            workload = item["workload"]
            prefix = f"deployments[{index}].workload"
            if "sample" in workload:
                workload["sample"] = _resolve_sample(workload["sample"], f"{prefix}.sample", base)
            if workload.get("load") is not None:
                workload["load"] = _resolve_load(workload["load"], f"{prefix}.load")
    return scenario_from_dict(data)
