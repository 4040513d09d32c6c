"""A benchmark's workload as a small JSON-friendly spec, built with `advisor.engine.workload`.

The engine owns the generators (Poisson/gamma arrivals, lengths, trace resampling); this only
names the three kinds a benchmark job offers and validates user input field by field:

- poisson: `num_requests` arrivals at `rate_rps` with gamma `burstiness` (1 = Poisson, lower is
  burstier, as `vllm bench serve --burstiness`), lengths `prompt_tokens`/`output_tokens`
  uniform within +-`range_ratio`.
- concurrency: `concurrency` closed-loop users sending `num_requests` requests back to back.
- replay: a captured or imported trace (passed to `build`), replayed with its own arrival
  times `time_scale`d (0.5 = twice as fast), or rescaled to a mean `rate_rps`; `num_requests`
  takes the first N requests, or bootstraps more (`resample_workload`) when N exceeds the trace.

`concurrency` on poisson and replay is a client-side cap on requests in flight. Sweeps vary one
field: `at_rate` / `at_concurrency`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from advisor.engine.workload import (
    Workload,
    WorkloadError,
    closed_loop_workload,
    resample_workload,
    synthetic_workload,
)

WorkloadKind = Literal["poisson", "concurrency", "replay"]
KINDS: tuple[WorkloadKind, ...] = ("poisson", "concurrency", "replay")


class WorkloadSpecError(ValueError):
    """A workload field is invalid; the message names it."""


@dataclass(frozen=True)
class WorkloadSpec:
    kind: WorkloadKind
    num_requests: int | None = 100
    rate_rps: float | None = None
    burstiness: float = 1.0
    concurrency: int | None = None
    prompt_tokens: int = 256
    output_tokens: int = 128
    range_ratio: float = 0.0
    time_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WorkloadSpecError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        _int_field("num_requests", self.num_requests, minimum=1, optional=self.kind == "replay")
        _int_field("concurrency", self.concurrency, minimum=1, optional=self.kind != "concurrency")
        _int_field("prompt_tokens", self.prompt_tokens, minimum=1)
        _int_field("output_tokens", self.output_tokens, minimum=1)
        _int_field("seed", self.seed, minimum=0)
        if self.kind == "poisson" and self.rate_rps is None:
            raise WorkloadSpecError("rate_rps: required for a poisson workload")
        if self.rate_rps is not None:
            _float_field("rate_rps", self.rate_rps, positive=True, allow_inf=True)
        _float_field("burstiness", self.burstiness, positive=True)
        _float_field("time_scale", self.time_scale, positive=True)
        _float_field("range_ratio", self.range_ratio, positive=False)
        if not 0.0 <= self.range_ratio < 1.0:
            raise WorkloadSpecError(f"range_ratio: must be in [0, 1), got {self.range_ratio!r}")

    def build(self, trace: Workload | None = None) -> Workload:
        """The concrete workload (seeded: the same spec always gives the same requests)."""
        rng = np.random.default_rng(self.seed)
        try:
            if self.kind == "concurrency":
                assert self.num_requests is not None
                assert self.concurrency is not None
                return closed_loop_workload(
                    num_requests=self.num_requests,
                    concurrency=self.concurrency,
                    prompt_tokens=self.prompt_tokens,
                    output_tokens=self.output_tokens,
                    rng=rng,
                    range_ratio=self.range_ratio,
                )
            if self.kind == "poisson":
                assert self.num_requests is not None
                assert self.rate_rps is not None
                return synthetic_workload(
                    rng,
                    num_requests=self.num_requests,
                    rate_rps=self.rate_rps,
                    prompt_tokens=self.prompt_tokens,
                    output_tokens=self.output_tokens,
                    burstiness=self.burstiness,
                    range_ratio=self.range_ratio,
                    max_concurrency=self.concurrency,
                )
            return self._replay(trace, rng)
        except WorkloadError as exc:
            raise WorkloadSpecError(str(exc)) from exc

    def _replay(self, trace: Workload | None, rng: np.random.Generator) -> Workload:
        if trace is None or trace.num_requests == 0:
            raise WorkloadSpecError("trace: a replay needs a trace with at least one request")
        wanted = self.num_requests or trace.num_requests
        if wanted <= trace.num_requests:
            chosen = trace.head(wanted)
        else:
            chosen = resample_workload(trace, rng, num_requests=wanted)
        if self.rate_rps is not None:
            chosen = chosen.with_rate(self.rate_rps)
        elif self.time_scale != 1.0:
            chosen = chosen.time_scaled(self.time_scale)
        return chosen.with_max_concurrency(self.concurrency)

    def at_rate(self, rate_rps: float) -> WorkloadSpec:
        if self.kind == "concurrency":
            raise WorkloadSpecError("rate_rps: a closed-loop (concurrency) workload has no rate")
        return replace(self, rate_rps=rate_rps)

    def at_concurrency(self, concurrency: int) -> WorkloadSpec:
        return replace(self, concurrency=int(concurrency))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["rate_rps"] is not None and math.isinf(data["rate_rps"]):
            data["rate_rps"] = "inf"
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkloadSpec:
        if not isinstance(data, Mapping):
            raise WorkloadSpecError("workload: expected an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkloadSpecError(f"{unknown[0]}: unknown workload field")
        if "kind" not in data:
            raise WorkloadSpecError("kind: required")
        values = dict(data)
        if values.get("rate_rps") == "inf":
            values["rate_rps"] = math.inf
        return cls(**values)


def _int_field(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadSpecError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def _float_field(name: str, value: object, *, positive: bool, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise WorkloadSpecError(f"{name}: must be a number, got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise WorkloadSpecError(f"{name}: must be finite, got {value!r}")
    if positive and not value > 0:
        raise WorkloadSpecError(f"{name}: must be > 0, got {value!r}")
