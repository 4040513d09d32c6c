"""Samplers: each reads one source once per call and returns Observations (payload rows).

A sampler never raises for an unavailable source: it says so once through `notes` (the
agent logs notes) and returns empty observations, so the other samplers keep running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Row = dict[str, Any]


@dataclass
class Observations:
    """Rows in the ingest payload's shapes (`probes.ingest.schema` documents the fields)."""

    gpus: list[Row] = field(default_factory=list)
    deployments: list[Row] = field(default_factory=list)
    gpu_samples: list[Row] = field(default_factory=list)
    engine_samples: list[Row] = field(default_factory=list)
    host: Row | None = None
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Observations) -> None:
        self.gpus.extend(other.gpus)
        self.deployments.extend(other.deployments)
        self.gpu_samples.extend(other.gpu_samples)
        self.engine_samples.extend(other.engine_samples)
        if other.host is not None:
            self.host = {**(self.host or {}), **other.host}
        self.notes.extend(other.notes)

    def to_json(self) -> Row:
        return {
            "gpus": self.gpus,
            "deployments": self.deployments,
            "gpu_samples": self.gpu_samples,
            "engine_samples": self.engine_samples,
            "host": self.host,
            "notes": self.notes,
        }


class Sampler(Protocol):
    """One source of observations, called every sampling round."""

    name: str

    def sample(self, now_s: float) -> Observations: ...

    def close(self) -> None: ...


class Once:
    """Remembers which notes were already given, so each state change is said once."""

    def __init__(self) -> None:
        self._said: str | None = None

    def say(self, observations: Observations, note: str | None) -> None:
        """Add `note` if it differs from the last one; None resets (the source is fine)."""
        if note is not None and note != self._said:
            observations.notes.append(note)
        self._said = note
