"""Moving an imported trace in time, and whether it lies inside the windows assessments read.

No Django: the import service, `manage.py import_trace` and the dashboard share it.

- `shift_offset`: what to add to every arrival so the trace's first request is at a given
  time ("start at"), or its last request at the end of the windows assessments read now
  ("end now"). Assessments cover whole hours, [H - window, H) with H the start of the
  current UTC hour (`advisor.services.assessments.assessment_start`), so "end now" puts the
  last request one second before H: a request after H would be outside every window until
  the next hour, and a trace shorter than the hour so far would be missed entirely.
- `outside_windows`: the warning when a trace overlaps none of the assessment windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from advisor.engine.bounds import ASSESSMENT_WINDOWS

# Where "end now" puts the last request: this much before the current window end.
END_NOW_MARGIN = timedelta(seconds=1)


def assessment_window_end(now: datetime) -> datetime:
    """The end of the windows an assessment started at `now` reads: the start of its hour."""
    return now.replace(minute=0, second=0, microsecond=0)


def shift_offset(
    first: datetime,
    last: datetime,
    *,
    start_at: datetime | None = None,
    end_now: bool = False,
    now: datetime,
) -> timedelta:
    """What to add to each arrival: first request -> `start_at`, or last -> just before now's hour.

    Exactly one of `start_at` and `end_now` is expected (the callers check and name the field).
    """
    if start_at is not None:
        return start_at - first
    if end_now:
        return assessment_window_end(now) - END_NOW_MARGIN - last
    return timedelta(0)


def window_words(windows: Sequence[tuple[str, timedelta]]) -> str:
    """ "24 h, 7 d, 14 d and 30 d" """
    words = [_span(span) for _key, span in windows]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def outside_windows(
    first: datetime,
    last: datetime,
    *,
    now: datetime,
    windows: Sequence[tuple[str, timedelta]] = ASSESSMENT_WINDOWS,
) -> str | None:
    """None when [first, last] overlaps one of `windows` ending at now's hour, else the warning.

    The warning names the windows and their dates and says how to bring the trace in.
    """
    end = assessment_window_end(now)
    if any(first < end and last >= end - span for _key, span in windows):
        return None
    longest = max(span for _key, span in windows)
    fmt = "%Y-%m-%d %H:%M"
    where = "after" if first >= end else "before"
    return (
        f"the trace ({first:{fmt}} to {last:{fmt}} UTC) lies {where} every assessment window "
        f"(the last {window_words(windows)}, ending {end:{fmt}} UTC; the longest starts "
        f"{end - longest:{fmt}} UTC): assessments will not use it. Import it again with "
        '"end now" (its last request just before the current hour) or "start at" a time inside '
        "them."
    )


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0) and span >= timedelta(days=2):
        return f"{span // timedelta(days=1)} d"
    return f"{span / timedelta(hours=1):g} h"
