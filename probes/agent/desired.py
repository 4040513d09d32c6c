"""The node-config protocol between the server and an agent's node controller.

The server writes a node's desired config (`Node.desired_config`, `Desired.to_json()`); the
agent pulls it (`GET /api/v1/agent/config/`), applies it through its controller and reports
what runs (`POST /api/v1/agent/config/`, `Observed.to_json()`). Both sides parse with the
functions here, so a field means the same thing at both ends.

A generation number orders desired configs: the server bumps it on every write (a rollback
is a new generation carrying the old config). The agent applies a generation at most once:
one that failed is remembered and not retried (the agent stays on what it restored), and
one whose config equals what already serves healthy is adopted without a restart.

Pure: stdlib only. Errors raise `ProtocolError` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENGINE_ARG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
STATES = ("starting", "applying", "serving", "unhealthy", "down", "restoring")
MAX_TEXT = 4000


class ProtocolError(ValueError):
    """A desired config or report is malformed; `field` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NodeConfig:
    """What a controller applies: engine args, optionally another model, replicas, autoscaling."""

    engine_args: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    replicas: int | None = None
    autoscaling: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine_args": dict(self.engine_args)}
        if self.model:
            out["model"] = self.model
        if self.replicas is not None:
            out["replicas"] = self.replicas
        if self.autoscaling:
            out["autoscaling"] = dict(self.autoscaling)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "config") -> NodeConfig:
        if not isinstance(data, Mapping):
            raise ProtocolError(where, "expected an object")
        unknown = sorted(set(data) - {"engine_args", "model", "replicas", "autoscaling"})
        if unknown:
            raise ProtocolError(f"{where}.{unknown[0]}", "unknown field")
        args = data.get("engine_args", {})
        check_engine_args(args, f"{where}.engine_args")
        model = data.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ProtocolError(f"{where}.model", "expected a non-empty path or model id")
        replicas = data.get("replicas")
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 1000
        ):
            raise ProtocolError(f"{where}.replicas", "expected an integer 0..1000")
        autoscaling = data.get("autoscaling")
        if autoscaling is not None and not isinstance(autoscaling, Mapping):
            raise ProtocolError(f"{where}.autoscaling", "expected an object (a manifest)")
        return cls(dict(args), model, replicas, dict(autoscaling) if autoscaling else None)


def check_engine_args(args: Any, where: str = "engine_args") -> None:
    """vLLM engine args as {"max_num_seqs": 64, ...}: names, and values a CLI flag can take."""
    if not isinstance(args, Mapping):
        raise ProtocolError(where, "expected an object of engine arg names to values")
    for name, value in args.items():
        if not isinstance(name, str) or not ENGINE_ARG_NAME.match(name):
            raise ProtocolError(
                f"{where}.{name}", "not an engine arg name (lower case, digits, _: max_num_seqs)"
            )
        if name in ("model", "served_model_name", "host", "port"):
            raise ProtocolError(f"{where}.{name}", "set by the node controller, not by a change")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{where}.{name}", "must be a finite number")
        if not (value is None or isinstance(value, bool | int | float | str | Mapping)):
            raise ProtocolError(
                f"{where}.{name}", "expected a number, string, true/false, null or an object"
            )
        if isinstance(value, str) and (not value or "\n" in value or len(value) > 1000):
            raise ProtocolError(f"{where}.{name}", "expected a one-line, non-empty string")


@dataclass(frozen=True)
class Desired:
    """The server's answer to GET: generation 0 with no config means "keep what you run".

    `probe_interval_s` / `probe_for_s`: after applying this generation the agent sends a small
    completion every `probe_interval_s` for `probe_for_s` seconds, so the bake has latency and
    error data even without user traffic (0: no probes).
    """

    generation: int = 0
    config: NodeConfig | None = None
    rollout_id: int | None = None
    probe_interval_s: float = 0.0
    probe_for_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "config": self.config.to_json() if self.config is not None else None,
            "rollout_id": self.rollout_id,
            "probe_interval_s": self.probe_interval_s,
            "probe_for_s": self.probe_for_s,
        }

    @classmethod
    def from_json(cls, data: Any) -> Desired:
        if not isinstance(data, Mapping) or not data:
            return cls()
        generation = _int(data.get("generation", 0), "generation")
        raw = data.get("config")
        config = NodeConfig.from_json(raw) if raw is not None else None
        rollout = data.get("rollout_id")
        return cls(
            generation=generation,
            config=config,
            rollout_id=_int(rollout, "rollout_id") if rollout is not None else None,
            probe_interval_s=_float(data.get("probe_interval_s", 0.0), "probe_interval_s"),
            probe_for_s=_float(data.get("probe_for_s", 0.0), "probe_for_s"),
        )


@dataclass(frozen=True)
class Failure:
    """A generation the agent could not apply: why, and whether the previous config serves."""

    generation: int
    error: str
    at_s: float
    restored: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "error": self.error[-MAX_TEXT:],
            "at": self.at_s,
            "restored": self.restored,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "last_failure") -> Failure:
        if not isinstance(data, Mapping):
            raise ProtocolError(where, "expected an object")
        return cls(
            generation=_int(data.get("generation"), f"{where}.generation"),
            error=_text(data.get("error", ""), f"{where}.error"),
            at_s=_float(data.get("at"), f"{where}.at"),
            restored=_bool(data.get("restored"), f"{where}.restored"),
        )


@dataclass(frozen=True)
class Observed:
    """An agent's report: what runs, how healthy it is, and the live counters gates read.

    `restarts` counts unexpected exits of the served process since `agent_started_at` (a
    gate compares it across the bake). `metrics` is cumulative since the process started:
    {"at", "process_started_at", "requests_ok", "http_5xx", "http_total", "ttft": histogram,
    "tpot": histogram, "generation_tokens"} (histograms as `vllm_metrics.Histogram.to_json`).
    `probes` counts the agent's own smoke completions: {"ok", "failed", "last_error"}.
    """

    agent_started_at: float
    seq: int
    reported_at: float
    controller: str
    state: str
    applied_generation: int
    healthy: bool
    working_on: int | None = None
    config: NodeConfig | None = None
    last_failure: Failure | None = None
    restarts: int = 0
    last_exit: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    probes: Mapping[str, Any] | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_started_at": self.agent_started_at,
            "seq": self.seq,
            "reported_at": self.reported_at,
            "controller": self.controller,
            "state": self.state,
            "applied_generation": self.applied_generation,
            "healthy": self.healthy,
            "working_on": self.working_on,
            "config": self.config.to_json() if self.config is not None else None,
            "last_failure": self.last_failure.to_json() if self.last_failure else None,
            "restarts": self.restarts,
            "last_exit": dict(self.last_exit) if self.last_exit else None,
            "metrics": dict(self.metrics) if self.metrics is not None else None,
            "probes": dict(self.probes) if self.probes is not None else None,
            "detail": self.detail[-MAX_TEXT:],
        }

    @classmethod
    def from_json(cls, data: Any) -> Observed:
        if not isinstance(data, Mapping):
            raise ProtocolError("(body)", "expected a JSON object")
        state = data.get("state")
        if state not in STATES:
            raise ProtocolError("state", f"expected one of {', '.join(STATES)}, got {state!r}")
        controller = data.get("controller")
        if controller not in ("local", "kubernetes"):
            raise ProtocolError("controller", "expected local or kubernetes")
        raw_config = data.get("config")
        raw_failure = data.get("last_failure")
        working_on = data.get("working_on")
        for name in ("last_exit", "metrics", "probes"):
            if data.get(name) is not None and not isinstance(data.get(name), Mapping):
                raise ProtocolError(name, "expected an object or null")
        return cls(
            agent_started_at=_float(data.get("agent_started_at"), "agent_started_at"),
            seq=_int(data.get("seq"), "seq"),
            reported_at=_float(data.get("reported_at"), "reported_at"),
            controller=controller,
            state=state,
            applied_generation=_int(data.get("applied_generation"), "applied_generation"),
            healthy=_bool(data.get("healthy"), "healthy"),
            working_on=_int(working_on, "working_on") if working_on is not None else None,
            config=NodeConfig.from_json(raw_config) if raw_config is not None else None,
            last_failure=Failure.from_json(raw_failure) if raw_failure is not None else None,
            restarts=_int(data.get("restarts", 0), "restarts"),
            last_exit=data.get("last_exit"),
            metrics=data.get("metrics"),
            probes=data.get("probes"),
            detail=_text(data.get("detail", ""), "detail"),
        )

    def newer_than(self, other: Mapping[str, Any]) -> bool:
        """Whether this report supersedes `other` (a stored report's JSON; {} for none)."""
        if not other:
            return True
        started, seq = other.get("agent_started_at", 0.0), other.get("seq", -1)
        if not isinstance(started, int | float) or not isinstance(seq, int):
            return True
        return (self.agent_started_at, self.seq) > (float(started), seq)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(where, f"expected a non-negative integer, got {value!r}")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(where, f"expected a number, got {value!r}")
    if value < 0:
        raise ProtocolError(where, "must not be negative")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(where, f"expected true or false, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(where, "expected a string")
    return value[-MAX_TEXT:]
