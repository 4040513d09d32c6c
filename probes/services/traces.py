"""Import a request-trace file into one deployment: streaming, all-or-nothing.

Used by `manage.py import_trace` and the dashboard's upload page. Rows are parsed one at a
time and inserted in chunks inside one transaction; the first bad row stops the inserts,
parsing goes on to report up to MAX_ERRORS problems (row and column named), and the
transaction is rolled back, so a file either imports completely or leaves nothing behind.
A dry run parses and validates everything and stores nothing.

A shift (`shift_start_at`, or `shift_end_now`: see `probes.trace_shift`) reads the file twice:
once for its first and last arrival, then again to insert every arrival plus the offset. The
import keeps the file's own span and the offset (`TraceImport.original_*`, `shift_s`). The
report warns when the stored trace lies outside every assessment window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.db import transaction

from probes.models import (
    ModelDeployment,
    RequestRecord,
    RequestSource,
    TraceFormat,
    TraceImport,
    TraceShift,
)
from probes.models.traces import offset_text, prefix_reuse_text
from probes.services.bulk import bulk_insert_ignoring_conflicts
from probes.trace_shift import ASSESSMENT_WINDOWS, outside_windows, shift_offset
from probes.traces import RowError, TraceRow, open_text, parse_trace, trace_prefix_reuse

MAX_ERRORS = 50
# Rows inserted per COPY; ~100 bytes each in memory.
CHUNK_ROWS = 5_000
COLUMNS = (
    "deployment_id", "trace_import_id", "arrival_ts", "prompt_tokens", "output_tokens",
    "ttft_s", "e2e_s", "status", "source", "prefix_block_hashes", "prefix_block_tokens",
)  # fmt: skip


@dataclass
class ImportReport:
    """What an import did (or, for a dry run or a failed one, would have done)."""

    format: str
    file_name: str
    dry_run: bool
    rows_read: int = 0
    rows_imported: int = 0
    first_arrival: datetime | None = None
    last_arrival: datetime | None = None
    errors: list[RowError] = field(default_factory=list)
    errors_truncated: bool = False
    trace_import_id: int | None = None
    shift: str = ""  # a TraceShift value
    offset: timedelta = timedelta(0)
    original_first_arrival: datetime | None = None
    original_last_arrival: datetime | None = None
    warning: str | None = None  # e.g. the trace lies outside every assessment window
    prefix_reuse_share: float | None = None  # None: no block hashes in the file
    # Rows with block hashes, for the reuse share: (arrival, prompt tokens, block tokens,
    # hashes); about 100 bytes + 8 per block each, dropped once the share is known.
    hashed_rows: list[tuple[float, int, int, tuple[int, ...]]] = field(
        default_factory=list, repr=False
    )

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.errors:
            more = " (and more)" if self.errors_truncated else ""
            return (
                f"{self.file_name}: {len(self.errors)} error(s){more}; nothing was imported. "
                f"First: {self.errors[0]}"
            )
        span = ""
        if self.first_arrival and self.last_arrival:
            fmt = "%Y-%m-%d %H:%M:%S"
            span = f" from {self.first_arrival:{fmt}} to {self.last_arrival:{fmt}} UTC"
        verb = "would import" if self.dry_run else "imported"
        shifted = ""
        if self.shift and self.original_first_arrival is not None:
            how = TraceShift(self.shift).label
            shifted = (
                f" ({how}: shifted {offset_text(self.offset.total_seconds())}; the file starts "
                f"{self.original_first_arrival:%Y-%m-%d %H:%M:%S} UTC)"
            )
        reuse = ""
        if self.prefix_reuse_share is not None:
            reuse = f"; {prefix_reuse_text(self.prefix_reuse_share)}"
        return f"{self.file_name}: {verb} {self.rows_read} requests{span}{shifted}{reuse}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "file_name": self.file_name,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "rows_read": self.rows_read,
            "rows_imported": self.rows_imported,
            "first_arrival": self.first_arrival.isoformat() if self.first_arrival else None,
            "last_arrival": self.last_arrival.isoformat() if self.last_arrival else None,
            "errors": [
                {"row": e.row, "column": e.column, "message": e.message} for e in self.errors
            ],
            "errors_truncated": self.errors_truncated,
            "trace_import_id": self.trace_import_id,
            "shift": self.shift,
            "shift_s": self.offset.total_seconds(),
            "original_first_arrival": _iso(self.original_first_arrival),
            "original_last_arrival": _iso(self.original_last_arrival),
            "warning": self.warning,
            "prefix_reuse_share": self.prefix_reuse_share,
            "summary": self.summary(),
        }


class _Rollback(Exception):
    pass


def trace_import(
    *,
    deployment: ModelDeployment,
    file: IO[bytes] | Path,
    format: str,
    dry_run: bool = False,
    start: datetime | None = None,
    shift_start_at: datetime | None = None,
    shift_end_now: bool = False,
    file_name: str | None = None,
    user: Any = None,
    now: datetime | None = None,
    windows: Sequence[tuple[str, timedelta]] = ASSESSMENT_WINDOWS,
) -> ImportReport:
    """Import `file` (a path, or a seekable binary file / upload) as `format` requests.

    `start` places relative traces (burstgpt, mooncake, csv `arrival_s`; default: the
    current UTC hour) and overrides a vllm-bench run's own start. Then, at most one shift:
    `shift_start_at` moves the first request there, `shift_end_now` the last one to just
    before the current UTC hour (the end of the windows assessments read; `now` for tests).
    `windows`: the assessment windows the warning checks. Returns the report; when it has
    errors nothing was stored.
    """
    if isinstance(file, Path):
        with file.open("rb") as handle:
            return trace_import(
                deployment=deployment, file=handle, format=format, dry_run=dry_run,
                start=start, shift_start_at=shift_start_at, shift_end_now=shift_end_now,
                file_name=file_name or file.name, user=user, now=now, windows=windows,
            )  # fmt: skip
    now = now or datetime.now(UTC)
    name = file_name or getattr(file, "name", None) or "upload"
    report = ImportReport(format=format, file_name=Path(str(name)).name, dry_run=dry_run)
    if format not in TraceFormat.values:
        report.errors.append(
            RowError(0, "", f"unknown format {format!r}; one of {', '.join(TraceFormat.values)}")
        )
        return report
    if shift_start_at is not None and shift_end_now:
        report.errors.append(
            RowError(0, "shift_start_at", "choose one shift: start at a time, or end now")
        )
        return report
    shifting = shift_start_at is not None or shift_end_now
    if shifting and not _shift_planned(
        report, file, format, start, shift_start_at, shift_end_now, now
    ):
        return report
    try:
        with transaction.atomic():
            record = None
            if not dry_run:
                record = TraceImport.objects.create(
                    deployment=deployment, format=format, file_name=report.file_name[:255],
                    created_by=user if getattr(user, "pk", None) else None, request_count=0,
                    shift=report.shift, shift_s=report.offset.total_seconds(),
                    original_first_arrival_ts=report.original_first_arrival,
                    original_last_arrival_ts=report.original_last_arrival,
                )  # fmt: skip
            text = open_text(file)
            try:
                rows = _shifted(parse_trace(text, format, start), report.offset)
                _stream_rows(report, rows, deployment, record)
            finally:
                text.detach()  # leave the caller's file open (a wrapper closes it when freed)
            if report.ok and report.first_arrival and report.last_arrival:
                report.warning = outside_windows(
                    report.first_arrival, report.last_arrival, now=now, windows=windows
                )
            if report.errors or dry_run:
                raise _Rollback
            assert record is not None
            record.request_count = report.rows_imported
            record.first_arrival_ts = report.first_arrival
            record.last_arrival_ts = report.last_arrival
            record.prefix_reuse_share = report.prefix_reuse_share
            record.save(
                update_fields=[
                    "request_count", "first_arrival_ts", "last_arrival_ts", "prefix_reuse_share",
                ]
            )  # fmt: skip
            report.trace_import_id = record.pk
            transaction.on_commit(lambda: _queue_rollup(record.pk))
    except _Rollback:
        report.rows_imported = 0
    return report


def _shift_planned(
    report: ImportReport,
    file: IO[bytes],
    format: str,
    start: datetime | None,
    start_at: datetime | None,
    end_now: bool,
    now: datetime,
) -> bool:
    """First pass: the file's own span and the offset (in `report`); False when it has errors."""
    probe = ImportReport(format=format, file_name=report.file_name, dry_run=True)
    text = open_text(file)
    try:
        _stream_rows(probe, parse_trace(text, format, start), None, None)
    finally:
        text.detach()
        file.seek(0)
    if probe.errors or probe.first_arrival is None or probe.last_arrival is None:
        report.errors, report.errors_truncated = probe.errors, probe.errors_truncated
        report.rows_read = probe.rows_read
        return False
    report.original_first_arrival = probe.first_arrival
    report.original_last_arrival = probe.last_arrival
    report.shift = TraceShift.START_AT if start_at is not None else TraceShift.END_NOW
    report.offset = shift_offset(
        probe.first_arrival, probe.last_arrival, start_at=start_at, end_now=end_now, now=now
    )
    return True


def _shifted(rows: Iterator[TraceRow | RowError], offset: timedelta) -> Iterator[Any]:
    if not offset:
        yield from rows
        return
    for item in rows:
        yield replace(item, arrival=item.arrival + offset) if isinstance(item, TraceRow) else item


import_trace = trace_import  # the name the dashboard's upload page calls


def _stream_rows(
    report: ImportReport,
    rows: Any,
    deployment: ModelDeployment | None,
    record: TraceImport | None,
) -> None:
    chunk: list[tuple[Any, ...]] = []
    for item in rows:
        if isinstance(item, RowError):
            if len(report.errors) >= MAX_ERRORS:
                report.errors_truncated = True
                return
            report.errors.append(item)
            chunk.clear()
            continue
        _note(report, item)
        if report.errors or record is None or deployment is None:
            continue  # keep validating, stop inserting
        hashes = item.prefix_block_hashes
        chunk.append(
            (
                deployment.pk, record.pk, item.arrival.timestamp(), item.prompt_tokens,
                item.output_tokens, item.ttft_s, item.e2e_s, item.status, RequestSource.IMPORT,
                None if hashes is None else list(hashes), item.prefix_block_tokens,
            )
        )  # fmt: skip
        if len(chunk) >= CHUNK_ROWS:
            report.rows_imported += _insert(chunk)
            chunk = []
    if chunk and not report.errors:
        report.rows_imported += _insert(chunk)
    if report.rows_read == 0 and not report.errors:
        report.errors.append(RowError(0, "", "the file holds no requests"))
    if not report.errors:
        report.prefix_reuse_share = trace_prefix_reuse(report.hashed_rows)
    report.hashed_rows = []


def _note(report: ImportReport, row: TraceRow) -> None:
    report.rows_read += 1
    if row.prefix_block_hashes is not None and row.prefix_block_tokens is not None:
        report.hashed_rows.append(
            (
                row.arrival.timestamp(),
                row.prompt_tokens,
                row.prefix_block_tokens,
                row.prefix_block_hashes,
            )
        )
    if report.first_arrival is None or row.arrival < report.first_arrival:
        report.first_arrival = row.arrival
    if report.last_arrival is None or row.arrival > report.last_arrival:
        report.last_arrival = row.arrival


def _insert(chunk: list[tuple[Any, ...]]) -> int:
    return bulk_insert_ignoring_conflicts(
        RequestRecord,
        COLUMNS,
        chunk,
        ts_columns=frozenset({"arrival_ts"}),
        json_columns=frozenset({"prefix_block_hashes"}),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _queue_rollup(trace_import_id: int) -> None:
    from probes.tasks import rollup_trace_import

    rollup_trace_import.delay(trace_import_id)
