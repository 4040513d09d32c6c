"""Request-trace file formats: each parser streams rows and names the row and column of errors.

Formats (`TraceFormat`):
- `azure`: Azure LLM inference traces 2023/2024, CSV `TIMESTAMP,ContextTokens,GeneratedTokens`
  with absolute timestamps (UTC).
- `burstgpt`: BurstGPT CSV `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log
  Type`; Timestamp is seconds from the trace start; `Response tokens` 0 marks a failure.
- `mooncake`: Mooncake JSON lines `{"timestamp": ms from start, "input_length",
  "output_length", "hash_ids": [...]}`; `hash_ids` (optional) are the prompt's block hashes
  over `MOONCAKE_BLOCK_TOKENS`-token blocks (the last block may be partial), kept per request
  so prefix reuse can be measured and simulated.
- `vllm-bench`: the JSON of `vllm bench serve --save-result --save-detailed` (arrays
  `input_lens`, `output_lens`, `start_times`, optional `ttfts`, `latencies`, `errors`); it is
  read whole (one JSON document), the others line by line.
- `csv`: ours: `arrival_ts` (ISO 8601 or Unix seconds) or `arrival_s` (seconds from the
  start), `prompt_tokens`, `output_tokens`, optional `ttft_s`, `e2e_s`, `status`.

Relative timestamps are placed after `start`. Files may be gzip-compressed. Rows are numbered
as lines of the file (the header is row 1); vllm-bench rows by array index from 1.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import numpy as np

from advisor.engine.prefix_cache import prefix_blocks_from_rows, reused_prompt_share

MAX_TOKENS = 2**31 - 1
MOONCAKE_BLOCK_TOKENS = 512  # the block size of Mooncake's hash_ids (its trace README)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class TraceRow:
    row: int
    arrival: datetime
    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None = None
    e2e_s: float | None = None
    status: str = "ok"
    prefix_block_hashes: tuple[int, ...] | None = None  # None: unknown
    prefix_block_tokens: int | None = None


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
        column = f", column {self.column}" if self.column else ""
        return f"{where}{column}: {self.message}"


class _Bad(Exception):
    def __init__(self, column: str, message: str) -> None:
        self.column = column
        self.message = message


def open_text(stream: IO[bytes]) -> io.TextIOWrapper:
    """Text view of a seekable binary file or upload, un-gzipping it if it starts gzipped."""
    magic = stream.read(2)
    stream.seek(0)
    raw: Any = gzip.GzipFile(fileobj=stream) if magic == b"\x1f\x8b" else stream
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def default_start() -> datetime:
    """Where relative traces start when no start is given: the current UTC hour."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def parse_trace(
    text: IO[str], fmt: str, start: datetime | None = None
) -> Iterator[TraceRow | RowError]:
    """Rows of a trace in format `fmt` (a TraceFormat value); errors are yielded, not raised.

    `start` places relative traces (default: `default_start()`); for vllm-bench it replaces
    the run's own start time.
    """
    parsers = {
        "azure": _azure,
        "burstgpt": _burstgpt,
        "mooncake": _mooncake,
        "vllm-bench": _vllm_bench,
        "csv": _ours,
    }
    if fmt not in parsers:
        yield RowError(0, "", f"unknown format {fmt!r}; one of {', '.join(parsers)}")
        return
    try:
        if fmt == "vllm-bench":
            yield from _vllm_bench(text, start)
        else:
            yield from parsers[fmt](text, start or default_start())
    except UnicodeDecodeError as exc:
        yield RowError(0, "", f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        yield RowError(0, "", f"the file cannot be read: {exc}")


def trace_prefix_reuse(rows: list[tuple[float, int, int, tuple[int, ...]]]) -> float | None:
    """Measured prefix reuse of a trace: share of prompt tokens in blocks seen before.

    `rows`: (arrival, prompt tokens, block tokens, block hashes) of the requests that carry
    hashes, in any order (taken in arrival order). None when there are none.
    """
    if not rows:
        return None
    ordered = sorted(rows, key=lambda row: row[0])
    blocks, _kept = prefix_blocks_from_rows([r[3] for r in ordered], [r[2] for r in ordered])
    if blocks is None:
        return None
    prompts = np.array([r[1] for r in ordered], dtype=np.int64)
    return reused_prompt_share(blocks, prompts)


def _csv_rows(
    text: IO[str], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]] | RowError]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        yield RowError(1, "", "the file is empty: expected a header row")
        return
    except csv.Error as exc:
        yield RowError(1, "", f"not CSV: {exc}")
        return
    names = [name.strip() for name in header]
    missing = [name for name in required if name not in names]
    if missing:
        yield RowError(1, missing[0], f"missing column; the header has {', '.join(names)}")
        return
    wanted = {name: names.index(name) for name in (*required, *optional) if name in names}
    row_number = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(reader.line_num, "", f"not CSV: {exc}")
            return
        row_number = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(names):
            yield RowError(row_number, "", f"expected {len(names)} values, got {len(values)}")
            continue
        yield row_number, {name: values[i].strip() for name, i in wanted.items()}


def _azure(text: IO[str], start: datetime) -> Iterator[TraceRow | RowError]:
    for item in _csv_rows(text, ("TIMESTAMP", "ContextTokens", "GeneratedTokens")):
        if isinstance(item, RowError):
            yield item
            continue
        row, values = item
        try:
            yield TraceRow(
                row=row,
                arrival=_absolute("TIMESTAMP", values["TIMESTAMP"]),
                prompt_tokens=_tokens("ContextTokens", values["ContextTokens"]),
                output_tokens=_tokens("GeneratedTokens", values["GeneratedTokens"]),
            )
        except _Bad as bad:
            yield RowError(row, bad.column, bad.message)


def _burstgpt(text: IO[str], start: datetime) -> Iterator[TraceRow | RowError]:
    required = ("Timestamp", "Request tokens", "Response tokens")
    for item in _csv_rows(text, required, ("Model", "Log Type")):
        if isinstance(item, RowError):
            yield item
            continue
        row, values = item
        try:
            output = _tokens("Response tokens", values["Response tokens"])
            yield TraceRow(
                row=row,
                arrival=start + timedelta(seconds=_seconds("Timestamp", values["Timestamp"])),
                prompt_tokens=_tokens("Request tokens", values["Request tokens"]),
                output_tokens=output,
                status="ok" if output > 0 else "error",
            )
        except _Bad as bad:
            yield RowError(row, bad.column, bad.message)


def _mooncake(text: IO[str], start: datetime) -> Iterator[TraceRow | RowError]:
    for row, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            yield RowError(row, "", f"not a JSON object: {exc}")
            continue
        if not isinstance(record, dict):
            yield RowError(row, "", "not a JSON object")
            continue
        try:
            offset_ms = _seconds("timestamp", _field(record, "timestamp"))
            prompt = _tokens("input_length", _field(record, "input_length"))
            hashes = _block_hashes("hash_ids", record.get("hash_ids"), prompt)
            yield TraceRow(
                row=row,
                arrival=start + timedelta(milliseconds=offset_ms),
                prompt_tokens=prompt,
                output_tokens=_tokens("output_length", _field(record, "output_length")),
                prefix_block_hashes=hashes,
                prefix_block_tokens=None if hashes is None else MOONCAKE_BLOCK_TOKENS,
            )
        except _Bad as bad:
            yield RowError(row, bad.column, bad.message)


def _vllm_bench(text: IO[str], start: datetime | None) -> Iterator[TraceRow | RowError]:
    try:
        result = json.load(text)
    except ValueError as exc:
        yield RowError(0, "", f"not a JSON document: {exc}")
        return
    if not isinstance(result, dict):
        yield RowError(0, "", "expected the JSON object vllm bench serve saves")
        return
    arrays: dict[str, list[Any]] = {}
    for name in ("input_lens", "output_lens", "start_times"):
        value = result.get(name)
        if not isinstance(value, list):
            hint = " (run vllm bench serve with --save-result --save-detailed)"
            yield RowError(0, name, f"missing array{hint}")
            return
        arrays[name] = value
    for name in ("ttfts", "latencies", "errors"):
        value = result.get(name)
        if isinstance(value, list):
            arrays[name] = value
    count = len(arrays["input_lens"])
    for name, values in arrays.items():
        if len(values) != count:
            yield RowError(0, name, f"has {len(values)} items; input_lens has {count}")
            return
    try:
        base = _bench_start(result, start)
        first = min((_seconds("start_times", v) for v in arrays["start_times"]), default=0.0)
    except _Bad as bad:
        yield RowError(0, bad.column, bad.message)
        return
    for i in range(count):
        row = i + 1
        try:
            error = arrays.get("errors", [""] * count)[i]
            ttfts = arrays.get("ttfts")
            latencies = arrays.get("latencies")
            offset_s = _seconds("start_times", arrays["start_times"][i]) - first
            yield TraceRow(
                row=row,
                arrival=base + timedelta(seconds=offset_s),
                prompt_tokens=_tokens("input_lens", arrays["input_lens"][i]),
                output_tokens=_tokens("output_lens", arrays["output_lens"][i]),
                ttft_s=_optional_seconds("ttfts", ttfts[i]) if ttfts else None,
                e2e_s=_optional_seconds("latencies", latencies[i]) if latencies else None,
                status="error" if error else "ok",
            )
        except _Bad as bad:
            yield RowError(row, f"{bad.column}[{i}]", bad.message)


def _bench_start(result: dict[str, Any], start: datetime | None) -> datetime:
    """The run's start: `start` if given, else the saved `date` (its end) minus `duration`."""
    if start is not None:
        return start
    date = result.get("date")
    if not isinstance(date, str):
        raise _Bad("date", "missing; pass a start time")
    try:
        ended = datetime.strptime(date, "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise _Bad("date", f"{date!r} is not YYYYMMDD-HHMMSS") from exc
    duration = result.get("duration")
    seconds = float(duration) if isinstance(duration, int | float) else 0.0
    return ended - timedelta(seconds=seconds)


def _ours(text: IO[str], start: datetime) -> Iterator[TraceRow | RowError]:
    optional = ("arrival_ts", "arrival_s", "ttft_s", "e2e_s", "status")
    for item in _csv_rows(text, ("prompt_tokens", "output_tokens"), optional):
        if isinstance(item, RowError):
            yield item
            continue
        row, values = item
        try:
            if "arrival_ts" in values:
                arrival = _absolute("arrival_ts", values["arrival_ts"])
            elif "arrival_s" in values:
                arrival = start + timedelta(seconds=_seconds("arrival_s", values["arrival_s"]))
            else:
                raise _Bad("arrival_ts", "missing column: arrival_ts or arrival_s")
            status = values.get("status") or "ok"
            if status not in ("ok", "error", "aborted"):
                raise _Bad("status", f"{status!r} is not ok, error or aborted")
            yield TraceRow(
                row=row,
                arrival=arrival,
                prompt_tokens=_tokens("prompt_tokens", values["prompt_tokens"]),
                output_tokens=_tokens("output_tokens", values["output_tokens"]),
                ttft_s=_optional_seconds("ttft_s", values.get("ttft_s")),
                e2e_s=_optional_seconds("e2e_s", values.get("e2e_s")),
                status=status,
            )
        except _Bad as bad:
            yield RowError(row, bad.column, bad.message)


def _field(record: dict[str, Any], name: str) -> Any:
    if name not in record:
        raise _Bad(name, "missing")
    return record[name]


def _block_hashes(column: str, value: Any, prompt_tokens: int) -> tuple[int, ...] | None:
    """A list of integer block hashes (None when absent), at most one per started block."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Bad(column, f"expected a list of integers, got {type(value).__name__}")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= INT64_MAX:
            raise _Bad(f"{column}[{i}]", f"{item!r} is not an integer in 0..2^63-1")
    most = -(-prompt_tokens // MOONCAKE_BLOCK_TOKENS)
    if len(value) > most:
        raise _Bad(
            column,
            f"{len(value)} blocks of {MOONCAKE_BLOCK_TOKENS} tokens for a {prompt_tokens}-token "
            f"prompt (at most {most})",
        )
    return tuple(value)


def _tokens(column: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad(column, f"{value!r} is not a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise _Bad(column, f"{value!r} is not a whole number") from None
    if not 0 <= number <= MAX_TOKENS:
        raise _Bad(column, f"{number} is out of range 0..{MAX_TOKENS}")
    return number


def _seconds(column: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad(column, f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Bad(column, f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise _Bad(column, f"{value!r} must be a finite number >= 0")
    return number


def _optional_seconds(column: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    return _seconds(column, value)


def _absolute(column: str, value: str) -> datetime:
    """ISO 8601 (naive = UTC) or Unix seconds."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or not 0 <= seconds < 32503680000:
            raise _Bad(column, f"{value!r} is not a plausible Unix time")
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(column, f"{value!r} is not an ISO 8601 time or Unix seconds") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
