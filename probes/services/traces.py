"""Import a request-trace file into one deployment: streaming, all-or-nothing.

Used by `manage.py import_trace` and the dashboard's upload page. Rows are parsed one at a
time and inserted in chunks inside one transaction; the first bad row stops the inserts,
parsing goes on to report up to MAX_ERRORS problems (row and column named), and the
transaction is rolled back, so a file either imports completely or leaves nothing behind.
A dry run parses and validates everything and stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.db import transaction

from probes.models import ModelDeployment, RequestRecord, RequestSource, TraceFormat, TraceImport
from probes.services.bulk import bulk_insert_ignoring_conflicts
from probes.traces import RowError, TraceRow, open_text, parse_trace

MAX_ERRORS = 50
# Rows inserted per COPY; ~100 bytes each in memory.
CHUNK_ROWS = 5_000
COLUMNS = (
    "deployment_id", "trace_import_id", "arrival_ts", "prompt_tokens", "output_tokens",
    "ttft_s", "e2e_s", "status", "source",
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
        return f"{self.file_name}: {verb} {self.rows_read} requests{span}"

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
    file_name: str | None = None,
    user: Any = None,
) -> ImportReport:
    """Import `file` (a path, or a seekable binary file / upload) as `format` requests.

    `start` places relative traces (burstgpt, mooncake, csv `arrival_s`; default: the
    current UTC hour) and overrides a vllm-bench run's own start. Returns the report; when
    it has errors nothing was stored.
    """
    if isinstance(file, Path):
        with file.open("rb") as handle:
            return trace_import(
                deployment=deployment, file=handle, format=format, dry_run=dry_run,
                start=start, file_name=file_name or file.name, user=user,
            )  # fmt: skip
    name = file_name or getattr(file, "name", None) or "upload"
    report = ImportReport(format=format, file_name=Path(str(name)).name, dry_run=dry_run)
    if format not in TraceFormat.values:
        report.errors.append(
            RowError(0, "", f"unknown format {format!r}; one of {', '.join(TraceFormat.values)}")
        )
        return report
    try:
        with transaction.atomic():
            record = None
            if not dry_run:
                record = TraceImport.objects.create(
                    deployment=deployment, format=format, file_name=report.file_name[:255],
                    created_by=user if getattr(user, "pk", None) else None, request_count=0,
                )  # fmt: skip
            text = open_text(file)
            try:
                _stream_rows(report, parse_trace(text, format, start), deployment, record)
            finally:
                text.detach()  # leave the caller's file open (a wrapper closes it when freed)
            if report.errors or dry_run:
                raise _Rollback
            assert record is not None
            record.request_count = report.rows_imported
            record.first_arrival_ts = report.first_arrival
            record.last_arrival_ts = report.last_arrival
            record.save(update_fields=["request_count", "first_arrival_ts", "last_arrival_ts"])
            report.trace_import_id = record.pk
            transaction.on_commit(lambda: _queue_rollup(record.pk))
    except _Rollback:
        report.rows_imported = 0
    return report


import_trace = trace_import  # the name the dashboard's upload page calls


def _stream_rows(
    report: ImportReport,
    rows: Any,
    deployment: ModelDeployment,
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
        if report.errors or record is None:
            continue  # keep validating, stop inserting
        chunk.append(
            (
                deployment.pk, record.pk, item.arrival.timestamp(), item.prompt_tokens,
                item.output_tokens, item.ttft_s, item.e2e_s, item.status, RequestSource.IMPORT,
            )
        )  # fmt: skip
        if len(chunk) >= CHUNK_ROWS:
            report.rows_imported += _insert(chunk)
            chunk = []
    if chunk and not report.errors:
        report.rows_imported += _insert(chunk)
    if report.rows_read == 0 and not report.errors:
        report.errors.append(RowError(0, "", "the file holds no requests"))


def _note(report: ImportReport, row: TraceRow) -> None:
    report.rows_read += 1
    if report.first_arrival is None or row.arrival < report.first_arrival:
        report.first_arrival = row.arrival
    if report.last_arrival is None or row.arrival > report.last_arrival:
        report.last_arrival = row.arrival


def _insert(chunk: list[tuple[Any, ...]]) -> int:
    return bulk_insert_ignoring_conflicts(
        RequestRecord, COLUMNS, chunk, ts_columns=frozenset({"arrival_ts"})
    )


def _queue_rollup(trace_import_id: int) -> None:
    from probes.tasks import rollup_trace_import

    rollup_trace_import.delay(trace_import_id)
