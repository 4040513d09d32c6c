"""The allowed range of every value a person can store or try: prices, SLOs, replicas, dates.

One definition, used by the engine (`scenario.SloSpec`, `scenario.PriceEntry`), the what-if
input (`advisor.services.whatif`), the models' field validators and database check
constraints (`probes.bounds` turns a `Bound` into both), and the assessment, which skips a
stored value out of range by name (a `RefusedValue`) instead of failing as a whole.

Changing a number here changes the check constraints: `makemigrations --check` then asks for
a migration, so the database and the forms cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A closed range [low, high], or (low, high] when `low_open`; `unit` is for messages."""

    name: str
    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    whole: bool = False

    def contains(self, value: object) -> bool:
        """Whether `value` is a number in range (a Decimal, as a DecimalField gives, counts;
        a bool, a string, NaN or an infinity does not)."""
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return False
        number = float(value)
        if not math.isfinite(number) or (self.whole and not number.is_integer()):
            return False
        above = number > self.low if self.low_open else number >= self.low
        return above and number <= self.high

    @property
    def text(self) -> str:
        """The range in words: "> 0 and <= 3600 s"."""
        unit = f" {self.unit}" if self.unit else ""
        kind = "a whole number " if self.whole else ""
        return f"{kind}{'>' if self.low_open else '>='} {self.low:g} and <= {self.high:g}{unit}"

    def problem(self, value: object) -> str | None:
        """None when `value` is in range, else "must be ..., got ..." (for any caller's error)."""
        return None if self.contains(value) else f"must be {self.text}, got {shown(value)}"


@dataclass(frozen=True)
class DateBound:
    """A closed range of calendar dates."""

    name: str
    low: date
    high: date

    def contains(self, value: object) -> bool:
        return isinstance(value, date) and self.low <= value <= self.high

    @property
    def text(self) -> str:
        return f"between {self.low.isoformat()} and {self.high.isoformat()}"

    def problem(self, value: object) -> str | None:
        return None if self.contains(value) else f"must be {self.text}, got {shown(value)}"


def shown(value: object) -> str:
    """A value as a message shows it: 1e+308, -2.0000 (a Decimal), 1900-01-01, 'text'."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# What one GPU-hour may cost. 0 is allowed (hardware already paid for); the catalog's list
# prices run $0.68 (L4) to $5.41 (H200-SXM), so $1000 only stops typos and sign errors.
PRICE_USD_PER_GPU_HOUR = Bound("usd_per_gpu_hour", 0.0, 1000.0, "USD per GPU-hour")

# Objectives: latencies must be positive (0 is unmeetable); an hour to the first token or a
# minute per token is no longer interactive serving, so beyond that is a typo (1e308, ms for s).
TTFT_P95_S = Bound("ttft_p95_s", 0.0, 3600.0, "s", low_open=True)
TPOT_P95_S = Bound("tpot_p95_s", 0.0, 60.0, "s", low_open=True)
# Benchmark accuracy is scored in points out of 100.
MAX_QUALITY_LOSS_POINTS = Bound("max_quality_loss_points", 0.0, 100.0, "points")
SLO_BOUNDS: dict[str, Bound] = {
    bound.name: bound for bound in (TTFT_P95_S, TPOT_P95_S, MAX_QUALITY_LOSS_POINTS)
}

# Replicas a deployment runs today or in a what-if (0: scaled to zero; what-ifs ask for >= 1).
REPLICAS = Bound("replicas", 0, 512, whole=True)

# The redundancy rule: the fewest replicas any plan keeps for a deployment (0: no minimum).
MIN_REPLICAS = Bound("min_replicas", 0, REPLICAS.high, whole=True)

# Days of telemetry a scheduled assessment looks back over (an ad-hoc one: 1 h .. 90 d).
WINDOW_DAYS = Bound("window_days", 1, 90, "days", whole=True)

# The windows assessments are offered over (the dashboard's form; the weekly schedule's
# default is 7 days), each ending at the start of the current UTC hour. A trace import warns
# when it overlaps none of them (`probes.trace_shift`).
ASSESSMENT_WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("14d", timedelta(days=14)),
    ("30d", timedelta(days=30)),
)

# A price "as of" a date: GPUs priced per hour did not exist before 2000, and a date past
# 2100 is a typo. (A fixed range, so the database can check it too.)
PRICE_AS_OF = DateBound("as_of", date(2000, 1, 1), date(2100, 12, 31))

# By the field name that stores each value (the models' validators look them up here).
_ALL: tuple[Bound | DateBound, ...] = (
    PRICE_USD_PER_GPU_HOUR, *SLO_BOUNDS.values(), REPLICAS, MIN_REPLICAS, WINDOW_DAYS,
    PRICE_AS_OF,
)  # fmt: skip
BOUNDS: dict[str, Bound | DateBound] = {bound.name: bound for bound in _ALL}


@dataclass(frozen=True)
class RefusedValue:
    """A stored value out of its bound that a reader skipped: which row, field and value."""

    model: str  # "probes.PriceSheet"
    row_id: int | None
    field: str
    value: Any
    message: str  # what was wrong, and what was done instead

    @property
    def text(self) -> str:
        return f"{self.model} #{self.row_id} {self.field}={shown(self.value)}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "id": self.row_id,
            "field": self.field,
            "value": shown(self.value),
            "message": self.message,
            "text": self.text,
        }
