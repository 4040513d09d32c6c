"""Benchmarks behind `make bench`: each `bench_*.py` module has `run() -> Iterable[Figure]`.

`python -m tests.benchmarks [NAME ...]` runs all (or the named) modules, prints each figure as
`BENCH <name> <value> <unit>` and writes them to `var/bench/results.json`. Targets are checked
here, by people reading the figures, never by timed assertions in the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 200000", printed beside the value for the reader

    def line(self) -> str:
        target = f"  (target {self.target})" if self.target else ""
        return f"BENCH {self.name} {self.value:.6g} {self.unit}{target}"
