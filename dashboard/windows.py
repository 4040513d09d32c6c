"""The time window a page shows: `?window=24h&end=<ISO time>` from the query string.

Windows are [start, end). `end` defaults to now; a page whose data stopped earlier offers a
link to the window ending at its latest data rather than silently moving the window. A bad
value is reported by field name and the default is used instead, so a page never 500s on a
hand-edited URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT = "24h"


@dataclass(frozen=True)
class Window:
    key: str
    start: datetime
    end: datetime
    end_given: bool = False
    errors: tuple[str, ...] = field(default=())

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @property
    def hours(self) -> float:
        return self.span.total_seconds() / 3600.0

    def query(self, **extra: str) -> str:
        """The query string that reproduces this window (plus `extra` parameters)."""
        params = {"window": self.key, **extra}
        if self.end_given:
            params["end"] = self.end.isoformat()
        return urlencode({k: v for k, v in params.items() if v})

    def ending_at(self, end: datetime) -> Window:
        return Window(self.key, end - PRESETS[self.key], end, end_given=True)


def window_from(
    params: QueryDict, *, default: str = DEFAULT, now: datetime | None = None
) -> Window:
    """Parse `window` and `end`; errors name the field and fall back to the default."""
    errors: list[str] = []
    key = params.get("window") or default
    if key not in PRESETS:
        errors.append(f"window: unknown value {key!r}; one of {', '.join(PRESETS)}")
        key = default
    end = now or timezone.now()
    end_given = False
    raw_end = params.get("end")
    if raw_end:
        try:
            parsed = parse_datetime(raw_end)
        except ValueError:
            parsed = None
        if parsed is None:
            errors.append(f"end: {raw_end!r} is not an ISO 8601 date and time")
        else:
            end = parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
            end_given = True
    return Window(key, end - PRESETS[key], end, end_given=end_given, errors=tuple(errors))
