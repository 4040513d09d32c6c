"""The agent batch format: one field table that both validates payloads and documents them.

A batch is a JSON object (optionally gzip-encoded) with a `batch_id`, the node's inventory
(`gpus`, `deployments`), and rows (`gpu_samples`, `engine_samples`, `requests`). Timestamps
are Unix seconds (UTC, float). Validation is hand-rolled over these tables because a DRF
serializer costs ~100x more per row and the server must take >= 100k samples/s; the OpenAPI
schema is generated from the same tables (`probes.ingest.docs`), so the two cannot drift.

Each of the three row lists comes in one of two layouts (both accepted, in any mix):
- rows (layout 1, what the first agents send): a list of objects, one per row;
  errors name `gpu_samples[12].util_pct`.
- columns (layout 2): an object with one array per field, all of the same length; an
  optional field may be left out (all null) or hold nulls; errors name
  `gpu_samples.util_pct[12]`. Less than half the bytes (gzip: 5 KB instead of 12 KB per
  1,000 GPU samples) and a third of the CPU to decode and validate: no key repeated per
  row, and a column is checked by C-level builtins at once.

An empty list is `[]` in both layouts.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from probes.agent.vllm_metrics import Histogram, VllmMetricsError

# 2000-01-01T00:00:00Z: anything older is a unit mistake (ms, ns) rather than telemetry.
MIN_TS = 946_684_800.0
# Agents' clocks drift; a sample more than this far in the future is refused.
MAX_FUTURE_S = 3600.0
MAX_ERRORS = 20
MAX_HISTOGRAMS = 32
MAX_BUCKETS = 128
# The node's `host` object: what an agent reports about its machine (OS, CPUs, driver...).
# Nesting and size are capped so that storing it can never fail after the batch is committed.
MAX_HOST_DEPTH = 8
MAX_HOST_VALUES = 4096
# A deployment's `hf_config` (the served model's config.json): real ones are 1-20 KiB and
# nested 5 levels (quantization_config.config_groups.<group>.weights); a compressed-tensors
# `ignore` list of every module of a large MoE is the longest part.
MAX_HF_CONFIG_BYTES = 256 * 1024
MAX_HF_CONFIG_DEPTH = 8
MAX_HF_CONFIG_VALUES = 32_768
# PostgreSQL's text and jsonb cannot hold U+0000; every string is checked before it is stored.
NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (\\u0000) characters"
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# A request's prompt block hashes: signed 64-bit, at most this many per request (a 1M-token
# prompt in 16-token blocks), and at most prompt_tokens // block tokens + 1 (a trace may
# hash a partial last block, as Mooncake's do).
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
MAX_PREFIX_BLOCKS = 65_536
MAX_PREFIX_BLOCK_TOKENS = 1 << 20


class PayloadError(ValueError):
    """The batch is invalid; `errors` are (field path, message) pairs, at most MAX_ERRORS."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors))


class _TooMany(Exception):
    """Internal: MAX_ERRORS reached, stop validating."""


@dataclass(frozen=True)
class Field:
    """One field of a row: JSON kind, whether required, bounds, and its documentation."""

    name: str
    kind: str  # "number", "integer", "ts", "string", "histograms", "strings", "object", "int64s"
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 255
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""


def _n(name: str, lo: float | None = 0.0, hi: float | None = None, help: str = "") -> Field:
    return Field(name, "number", minimum=lo, maximum=hi, help=help)


GPU_FIELDS: tuple[Field, ...] = (
    Field("uuid", "string", required=True, max_length=96, help="NVML UUID, e.g. GPU-… or MIG-…"),
    # Stored in a smallint column (PostgreSQL: at most 32767).
    Field("index", "integer", required=True, minimum=0, maximum=32767),
    Field("name", "string", required=True, max_length=128, help="As NVML reports it"),
    Field("memory_bytes", "integer", required=True, minimum=0),
    Field("mig_parent_uuid", "string", max_length=96, help="Set on a MIG instance"),
)
DEPLOYMENT_FIELDS: tuple[Field, ...] = (
    Field("served_name", "string", required=True, help="vLLM --served-model-name"),
    Field("model_id", "string", help="Hugging Face id or path (vLLM /v1/models `root`)"),
    Field("gpu_uuids", "strings", help="GPUs this node's server of the deployment uses"),
    Field(
        "hf_config", "object", max_length=MAX_HF_CONFIG_BYTES,
        help="The served model's Hugging Face config.json (sent once per agent run, or when "
        f"it changes): at most {MAX_HF_CONFIG_BYTES // 1024} KiB, nested at most "
        f"{MAX_HF_CONFIG_DEPTH} levels, no NUL characters",
    ),
)  # fmt: skip
GPU_SAMPLE_FIELDS: tuple[Field, ...] = (
    Field("gpu_uuid", "string", required=True, max_length=96),
    Field("ts", "ts", required=True),
    Field("util_pct", "number", required=True, minimum=0.0, maximum=100.0),
    Field("mem_used_bytes", "integer", required=True, minimum=0),
    _n("power_w"),
    _n("energy_j", help="Cumulative since driver load"),
    _n("sm_clock_mhz"),
    _n("temperature_c", -100.0, 250.0),
    _n("sm_active", 0.0, 1.0, "DCGM / GPM profiling field, 0..1"),
    _n("sm_occupancy", 0.0, 1.0),
    _n("tensor_active", 0.0, 1.0),
    _n("dram_active", 0.0, 1.0),
)
ENGINE_SAMPLE_FIELDS: tuple[Field, ...] = (
    Field("served_name", "string", required=True),
    Field("instance", "string", required=True, help="<hostname>:<port> of the vLLM server"),
    Field("ts", "ts", required=True),
    Field("num_requests_running", "number", required=True, minimum=0.0),
    Field("num_requests_waiting", "number", required=True, minimum=0.0),
    _n("kv_cache_usage", 0.0, 1.0),
    _n("prompt_tokens_total"),
    _n("generation_tokens_total"),
    _n("requests_finished_total"),
    _n("preemptions_total"),
    _n("prompt_tokens_per_s"),
    _n("generation_tokens_per_s"),
    _n("requests_per_s"),
    _n("preemptions_per_s"),
    _n("spec_decode_drafts_total"),
    _n("spec_decode_draft_tokens_total"),
    _n("spec_decode_accepted_tokens_total"),
    Field("histograms", "histograms", help="name -> {buckets: [[le, cumulative]], sum, count}"),
)
REQUEST_FIELDS: tuple[Field, ...] = (
    Field("served_name", "string", required=True),
    Field("arrival_ts", "ts", required=True),
    Field("prompt_tokens", "integer", required=True, minimum=0, maximum=2**31 - 1),
    Field("output_tokens", "integer", required=True, minimum=0, maximum=2**31 - 1),
    _n("ttft_s"),
    _n("e2e_s"),
    Field("status", "string", choices=("ok", "error", "aborted"), default="ok"),
    Field(
        "prefix_block_hashes", "int64s", max_length=MAX_PREFIX_BLOCKS,
        help="The prompt's chained block hashes (signed 64-bit; block j hashes the prompt up "
        "to the end of block j), never its text; at most prompt_tokens // "
        "prefix_block_tokens + 1 of them",
    ),
    Field(
        "prefix_block_tokens", "integer", minimum=1, maximum=MAX_PREFIX_BLOCK_TOKENS,
        help="Tokens per hashed block; required with prefix_block_hashes",
    ),
)  # fmt: skip
AGENT_FIELDS: tuple[Field, ...] = (
    Field("version", "string", max_length=32),
    Field("dropped_records", "integer", minimum=0, help="Cumulative, spool cap reached"),
    Field("dropped_batches", "integer", minimum=0),
    Field(
        "dead_letter_batches", "integer", minimum=0,
        help="Cumulative: batches the server refused for good, moved to the dead-letter file",
    ),
    Field("dead_letter_last_error", "string", max_length=500, help="The last refusal's reason"),
    Field(
        "dropped_prefix_hashes", "integer", minimum=0,
        help="Cumulative: requests recorded without prompt block hashes (hash queue full)",
    ),
)  # fmt: skip
# Top-level lists: name -> (row fields, most rows accepted per batch).
ROW_LISTS: Mapping[str, tuple[tuple[Field, ...], int]] = {
    "gpus": (GPU_FIELDS, 4096),
    "deployments": (DEPLOYMENT_FIELDS, 1024),
    "gpu_samples": (GPU_SAMPLE_FIELDS, 200_000),
    "engine_samples": (ENGINE_SAMPLE_FIELDS, 50_000),
    "requests": (REQUEST_FIELDS, 200_000),
}
# The lists that may also come column-wise (the inventory lists are small: rows only).
COLUMN_LISTS = frozenset({"gpu_samples", "engine_samples", "requests"})
TOP_FIELDS = frozenset({"batch_id", "sent_at", "agent", "host", *ROW_LISTS})


@dataclass(frozen=True)
class Columns:
    """Validated rows held column-wise: `values[k]` is the column of `fields[k]`.

    A column is None when every value is null (the field was left out); otherwise it holds
    the values as the row layout's tuples would (numbers as floats, integers as ints, null
    optional values as the field's default). `columnar` says which layout the rows came
    in, so that later errors (an unknown GPU) name a value the way the agent wrote it.
    """

    fields: tuple[Field, ...]
    values: tuple[Sequence[Any] | None, ...]
    length: int
    name: str
    columnar: bool = True

    def __len__(self) -> int:
        return self.length

    def column(self, name: str) -> Sequence[Any] | None:
        for spec, values in zip(self.fields, self.values, strict=True):
            if spec.name == name:
                return values
        raise KeyError(name)

    def path(self, index: int, field: str) -> str:
        """The JSON path of one value, in the layout the batch used."""
        if self.columnar:
            return f"{self.name}.{field}[{index}]"
        return f"{self.name}[{index}].{field}"

    def rows(self) -> list[tuple[Any, ...]]:
        columns = [
            values if values is not None else [spec.default] * self.length
            for spec, values in zip(self.fields, self.values, strict=True)
        ]
        return list(zip(*columns, strict=True)) if columns else []


@dataclass(frozen=True)
class Batch:
    """A validated batch: rows are tuples in the order of their field table.

    `gpu_samples` are kept column-wise whatever the layout they came in: they are the
    volume (>= 100k per second) and are stored column by column (`probes.ingest.copy`).
    """

    batch_id: str
    agent: Mapping[str, Any]
    host: Mapping[str, Any] | None
    gpus: list[tuple[Any, ...]]
    deployments: list[tuple[Any, ...]]
    gpu_samples: Columns
    engine_samples: list[tuple[Any, ...]]
    requests: list[tuple[Any, ...]]
    # SHA-256 of the row lists as sent: a batch id re-sent with other rows is told apart.
    rows_digest: str = ""


def rows_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of a decoded batch's row lists (not its `agent`, `host` or `sent_at`).

    A retry of the same batch carries the same rows whatever else it re-stamps; orjson
    serialises 100k samples in a few milliseconds, well under their validation.
    """
    return hashlib.sha256(orjson.dumps([data.get(name) for name in ROW_LISTS])).hexdigest()


def parse_batch(data: object, *, now_s: float | None = None) -> Batch:
    """Validate a decoded batch; raise PayloadError naming every bad field (up to MAX_ERRORS)."""
    errors: list[tuple[str, str]] = []
    max_ts = (time.time() if now_s is None else now_s) + MAX_FUTURE_S
    if not isinstance(data, dict):
        raise PayloadError([("(body)", "must be a JSON object")])
    try:
        for key in data:
            if key not in TOP_FIELDS:
                _add(errors, str(key), "unknown field")
        batch_id = data.get("batch_id")
        if not isinstance(batch_id, str) or not BATCH_ID_RE.match(batch_id):
            _add(errors, "batch_id", "required: 1-64 characters of A-Z a-z 0-9 _ . : -")
        sent_at = data.get("sent_at")
        if sent_at is not None and not _is_number(sent_at):
            _add(errors, "sent_at", "must be Unix seconds")
        agent_rows = _rows(data, "agent", AGENT_FIELDS, 1, max_ts, errors, single=True)
        host = data.get("host")
        if host is not None and not isinstance(host, dict):
            _add(errors, "host", "must be an object")
        elif host is not None:
            problem = _json_problem(host, "host")
            if problem is not None:
                _add(errors, *problem)
        lists: dict[str, Any] = {}
        for name, (fields, limit) in ROW_LISTS.items():
            raw = data.get(name)
            if name in COLUMN_LISTS and isinstance(raw, dict):
                columns = _columns(raw, name, fields, limit, max_ts, errors)
                lists[name] = columns if name == "gpu_samples" else columns.rows()
                if name == "requests" and not errors:
                    _check_prefix_blocks(lists[name], lambda i, f: f"requests.{f}[{i}]", errors)
                continue
            rows = _rows(data, name, fields, limit, max_ts, errors)
            if name == "requests" and not errors:
                _check_prefix_blocks(rows, lambda i, f: f"requests[{i}].{f}", errors)
            if name == "gpu_samples":
                lists[name] = _transpose(rows, fields, name)
            else:
                lists[name] = rows
    except _TooMany:
        pass
    if errors:
        raise PayloadError(errors)
    names = (f.name for f in AGENT_FIELDS)
    agent = dict(zip(names, agent_rows[0], strict=True)) if agent_rows else {}
    return Batch(
        batch_id=str(batch_id), agent=agent, host=host, rows_digest=rows_digest(data), **lists
    )


_PROMPT = next(i for i, f in enumerate(REQUEST_FIELDS) if f.name == "prompt_tokens")
_HASHES = next(i for i, f in enumerate(REQUEST_FIELDS) if f.name == "prefix_block_hashes")
_BLOCK = next(i for i, f in enumerate(REQUEST_FIELDS) if f.name == "prefix_block_tokens")


def _check_prefix_blocks(
    rows: Sequence[tuple[Any, ...]], path: Callable[[int, str], str], errors: list[tuple[str, str]]
) -> None:
    """Across fields of a request row: hashes and block size come together, and a prompt of
    n tokens has at most n // block + 1 blocks."""
    for i, row in enumerate(rows):
        hashes, block = row[_HASHES], row[_BLOCK]
        if hashes is None and block is None:
            continue
        if block is None:
            _add(errors, path(i, "prefix_block_tokens"), "required with prefix_block_hashes")
        elif hashes is None:
            _add(errors, path(i, "prefix_block_hashes"), "required with prefix_block_tokens")
        elif len(hashes) > row[_PROMPT] // block + 1:
            _add(
                errors, path(i, "prefix_block_hashes"),
                f"at most prompt_tokens // prefix_block_tokens + 1 = "
                f"{row[_PROMPT] // block + 1} hashes, got {len(hashes)}",
            )  # fmt: skip


def _json_problem(
    value: Any, path: str, *, max_depth: int = MAX_HOST_DEPTH, max_values: int = MAX_HOST_VALUES
) -> tuple[str, str] | None:
    """(path, message) of the first value of a free-form object PostgreSQL's jsonb could not
    hold or that is too large to be telemetry metadata; None when it can be stored."""
    todo: list[tuple[Any, str, int]] = [(value, path, 1)]
    seen = 0
    while todo:
        item, where, depth = todo.pop()
        seen += 1
        if seen > max_values:
            return path, f"must hold at most {max_values} values"
        if isinstance(item, str):
            if NUL in item:
                return where, NUL_MESSAGE
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return where, f"is nested more than {max_depth} levels deep"
            if isinstance(item, dict):
                for key, child in item.items():
                    if NUL in key:
                        return f"{where}.{key.replace(NUL, '?')}", f"key {NUL_MESSAGE}"
                    todo.append((child, f"{where}.{key}", depth + 1))
            else:
                todo.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _transpose(rows: list[tuple[Any, ...]], fields: tuple[Field, ...], name: str) -> Columns:
    if not rows:
        return Columns(fields, (None,) * len(fields), 0, name, columnar=False)
    values = tuple(
        None if column.count(None) == len(column) else column for column in zip(*rows, strict=True)
    )
    return Columns(fields, values, len(rows), name, columnar=False)


def _rows(
    data: Mapping[str, Any],
    name: str,
    fields: tuple[Field, ...],
    limit: int,
    max_ts: float,
    errors: list[tuple[str, str]],
    *,
    single: bool = False,
) -> list[tuple[Any, ...]]:
    raw = data.get(name)
    if raw is None:
        return []
    if single:
        if not isinstance(raw, dict):
            _add(errors, name, "must be an object")
            return []
        return _validate_rows([raw], fields, max_ts, errors, lambda _i: name)
    if not isinstance(raw, list):
        _add(errors, name, _NO_COLUMNS if name in COLUMN_LISTS else "must be a list")
        return []
    if len(raw) > limit:
        _add(errors, name, f"at most {limit} rows per batch, got {len(raw)}")
        return []
    return _validate_rows(raw, fields, max_ts, errors, lambda i: f"{name}[{i}]")


_NONE = type(None)
_NULL_TYPES = frozenset({_NONE})
_NUMBER_TYPES = frozenset({float, int})
_INT_TYPES = frozenset({int})
_STR_TYPES = frozenset({str})
_NO_COLUMNS = "must be a list of row objects, or an object of columns (one array per field)"


def _columns(
    raw: Mapping[str, Any],
    name: str,
    fields: tuple[Field, ...],
    limit: int,
    max_ts: float,
    errors: list[tuple[str, str]],
) -> Columns:
    """Validate the column layout: every field's array at once, C-level builtins first."""
    empty = Columns(fields, (None,) * len(fields), 0, name)
    known = {spec.name for spec in fields}
    if raw and not known & raw.keys():
        # Neither layout: say what either should look like rather than list unknown columns.
        _add(errors, name, _NO_COLUMNS)
        return empty
    for key in raw.keys() - known:
        _add(errors, f"{name}.{key}", "unknown field")
    length: int | None = None
    first = ""
    for spec in fields:
        column = raw.get(spec.name)
        if column is None:
            continue
        if type(column) is not list:
            _add(errors, f"{name}.{spec.name}", "must be an array (one value per row)")
            return empty
        if length is None:
            length, first = len(column), spec.name
        elif len(column) != length:
            _add(errors, f"{name}.{spec.name}", f"has {len(column)} values; {first} has {length}")
            return empty
    length = length or 0
    if length > limit:
        _add(errors, name, f"at most {limit} rows per batch, got {length}")
        return empty
    values: list[Sequence[Any] | None] = []
    for spec in fields:
        column = raw.get(spec.name)
        types: frozenset[type] | set[type] = set(map(type, column)) if column else _NULL_TYPES
        if types <= _NULL_TYPES:  # left out, or nothing but nulls
            if spec.required and length:
                _add(errors, f"{name}.{spec.name}", "required")
            values.append(None if spec.default is None else [spec.default] * length)
            continue
        assert column is not None
        checked = _column(column, set(types), spec, name, max_ts, errors)
        if checked is not None and spec.default is not None and _NONE in types:
            checked = [spec.default if v is None else v for v in checked]
        values.append(checked)
    return Columns(fields, tuple(values), length, name)


def _column(
    column: list[Any],
    types: set[type],
    spec: Field,
    name: str,
    max_ts: float,
    errors: list[tuple[str, str]],
) -> Sequence[Any] | None:
    """One validated column, as its row-layout values would be (None: errors were added).

    `types` are the types of its values; the fast checks are C-level passes over the list.
    """
    lo, hi = _lo(spec), _hi(spec, max_ts)
    kind = spec.kind
    present: list[Any] = column
    if _NONE in types:
        types = types - _NULL_TYPES
        if spec.required:
            return _column_slow(column, spec, name, lo, hi, errors)
        present = [v for v in column if v is not None]
    if kind in ("number", "ts"):
        if types <= _NUMBER_TYPES and lo <= min(present) and max(present) <= hi:
            if int not in types:
                return column
            return [v if v is None else float(v) for v in column]
    elif kind == "integer":
        if types <= _INT_TYPES and lo <= min(present) and max(present) <= hi:
            return column
    elif kind == "string" and types <= _STR_TYPES:
        # A column of strings holds few distinct values (GPU uuids, served names): check those.
        distinct = set(present)
        if (
            min(map(len, distinct)) > 0
            and max(map(len, distinct)) <= spec.max_length
            and (not spec.choices or distinct <= set(spec.choices))
            and not any(NUL in v for v in distinct)
        ):
            return column
    # Something in the column is wrong or unusual (3.0 for an integer, a histogram): the
    # slow path checks value by value and names the index.
    return _column_slow(column, spec, name, lo, hi, errors)


def _column_slow(
    column: list[Any], spec: Field, name: str, lo: float, hi: float, errors: list[tuple[str, str]]
) -> list[Any] | None:
    out: list[Any] = []
    ok = True
    for i, v in enumerate(column):
        if v is None:
            if spec.required:
                _add(errors, f"{name}.{spec.name}[{i}]", "required")
                ok = False
            out.append(spec.default)
            continue
        checked = _check_value(spec, v, lo, hi)
        if isinstance(checked, str):
            _add(errors, f"{name}.{spec.name}[{i}]", checked)
            ok = False
            continue
        out.append(checked[0])
    return out if ok else None


def _check_value(spec: Field, v: Any, lo: float, hi: float) -> tuple[Any] | str:
    """One non-null value: (the value as stored,) or the message naming what is wrong."""
    t = type(v)
    kind = spec.kind
    if kind == "number" or kind == "ts":
        if (t is float or t is int) and lo <= v <= hi:
            return (float(v),)
    elif kind == "integer":
        if t is int and lo <= v <= hi:
            return (v,)
        if t is float and v.is_integer() and lo <= v <= hi:
            return (int(v),)
    elif kind == "string":
        if (
            t is str
            and 0 < len(v) <= spec.max_length
            and (not spec.choices or v in spec.choices)
            and NUL not in v
        ):
            return (v,)
    else:
        return _check_complex(kind, v, spec)
    return _explain(spec, v, lo, hi)


def _validate_rows(
    rows: Sequence[Any],
    fields: tuple[Field, ...],
    max_ts: float,
    errors: list[tuple[str, str]],
    path: Callable[[int], str],
) -> list[tuple[Any, ...]]:
    """Rows as tuples in field order; invalid rows are reported in `errors` and left out."""
    fast = _fast_validator(fields)(rows, max_ts)
    if fast is not None:
        return fast
    # Some row is invalid (or unusual, e.g. 3.0 for an integer): the slow path says which.
    allowed = frozenset(f.name for f in fields)
    plan = [(f.name, f.required, _lo(f), _hi(f, max_ts), f) for f in fields]
    out: list[tuple[Any, ...]] = []
    append = out.append
    for i, row in enumerate(rows):
        if type(row) is not dict:
            _add(errors, path(i), "must be an object")
            continue
        if not row.keys() <= allowed:
            for key in row.keys() - allowed:
                _add(errors, f"{path(i)}.{key}", "unknown field")
            continue
        values: list[Any] = []
        ok = True
        for name, required, lo, hi, spec in plan:
            v = row.get(name)
            if v is None:
                if required:
                    _add(errors, f"{path(i)}.{name}", "required")
                    ok = False
                values.append(spec.default)
                continue
            checked = _check_value(spec, v, lo, hi)
            if isinstance(checked, str):
                # An object's message names the value inside it: `hf_config.text_config.x`.
                inner, _sep, message = checked.rpartition(NUL)
                _add(errors, f"{path(i)}.{name}{inner}", message)
                ok = False
                continue
            values.append(checked[0])
        if ok:
            append(tuple(values))
    return out


_FAST_CACHE: dict[tuple[Field, ...], Callable[[Sequence[Any], float], list[tuple[Any, ...]] | None]]
_FAST_CACHE = {}


def _fast_validator(
    fields: tuple[Field, ...],
) -> Callable[[Sequence[Any], float], list[tuple[Any, ...]] | None]:
    """A function specialised for one field table that returns the rows, or None on any doubt.

    Generated source with the checks inlined: a generic per-field loop was 3x slower, and
    this loop runs for every one of the >= 100k samples per second the server must take.
    """
    cached = _FAST_CACHE.get(fields)
    if cached is not None:
        return cached
    namespace: dict[str, Any] = {"ALLOWED": frozenset(f.name for f in fields), "NUL": NUL}
    body = [
        "def fast(rows, max_ts):",
        "    out = []",
        "    append = out.append",
        "    for row in rows:",
        "        if type(row) is not dict or not row.keys() <= ALLOWED:",
        "            return None",
        "        g = row.get",
    ]
    for k, spec in enumerate(fields):
        v = f"v{k}"
        namespace[f"LO{k}"] = _lo(spec)
        namespace[f"HI{k}"] = _hi(spec, 0.0)
        namespace[f"CH{k}"] = frozenset(spec.choices)
        namespace[f"CK{k}"] = lambda value, spec=spec: _check_complex(spec.kind, value, spec)
        namespace[f"DF{k}"] = spec.default
        hi = "max_ts" if spec.kind == "ts" else f"HI{k}"
        if spec.kind in ("number", "ts"):
            valid = f"(type({v}) is float or type({v}) is int) and LO{k} <= {v} <= {hi}"
        elif spec.kind == "integer":
            valid = f"type({v}) is int and LO{k} <= {v} <= {hi}"
        elif spec.kind == "string":
            valid = f"type({v}) is str and 0 < len({v}) <= {spec.max_length} and NUL not in {v}"
            if spec.choices:
                valid += f" and {v} in CH{k}"
        else:
            valid = f"type(c{k} := CK{k}({v})) is tuple"
        body.append(f"        {v} = g({spec.name!r})")
        body.append(f"        if {v} is None:")
        body.append("            return None" if spec.required else f"            {v} = DF{k}")
        body.append(f"        elif not ({valid}):")
        body.append("            return None")
        if spec.kind in ("strings", "histograms"):
            body.append("        else:")
            body.append(f"            {v} = c{k}[0]")
    body.append(f"        append(({', '.join(f'v{k}' for k in range(len(fields)))},))")
    body.append("    return out")
    exec("\n".join(body), namespace)  # source built above from our own field tables
    function: Callable[[Sequence[Any], float], list[tuple[Any, ...]] | None] = namespace["fast"]
    _FAST_CACHE[fields] = function
    return function


def hf_config_problem(value: Any, path: str) -> tuple[str, str] | None:
    """(path, message) when `value` cannot be stored as a deployment's config.json: not an
    object, over MAX_HF_CONFIG_BYTES as compact JSON, nested too deep, or holding a NUL.
    Shared by ingest and the dashboard's upload."""
    if not isinstance(value, dict):
        return path, f"must be a JSON object (a config.json), got {type(value).__name__}"
    problem = _json_problem(
        value, path, max_depth=MAX_HF_CONFIG_DEPTH, max_values=MAX_HF_CONFIG_VALUES
    )
    if problem is not None:
        return problem
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        return path, f"must be plain JSON: {exc}"
    if size > MAX_HF_CONFIG_BYTES:
        return path, f"must be at most {MAX_HF_CONFIG_BYTES // 1024} KiB as JSON, got {size} bytes"
    return None


def _check_complex(kind: str, value: Any, spec: Field) -> tuple[Any] | str:
    """Validate a `strings`, `histograms` or `object` field; a message (str) when invalid
    (an `object`'s message starts with the path inside it, see `_validate_rows`)."""
    if kind == "object":
        problem = hf_config_problem(value, "")
        if problem is None:
            return (value,)
        inner, message = problem
        return f"{inner}\0{message}"
    if kind == "int64s":
        if type(value) is not list or len(value) > spec.max_length:
            return f"must be a list of at most {spec.max_length} integers"
        # C-level passes first; the loop only to name the bad item.
        if value and not (
            set(map(type, value)) <= _INT_TYPES
            and min(value) >= MIN_INT64
            and max(value) <= MAX_INT64
        ):
            for j, item in enumerate(value):
                if type(item) is not int or not MIN_INT64 <= item <= MAX_INT64:
                    return f"item {j} must be an integer from -2**63 to 2**63-1, got {item!r}"
        return (value,)
    if kind == "strings":
        if not isinstance(value, list) or len(value) > 4096:
            return "must be a list of at most 4096 strings"
        for item in value:
            if not isinstance(item, str) or not 0 < len(item) <= spec.max_length:
                return f"every item must be a string of 1-{spec.max_length} characters"
            if NUL in item:
                return f"every item {NUL_MESSAGE}"
        return (value,)
    if kind == "histograms":
        if not isinstance(value, dict) or len(value) > MAX_HISTOGRAMS:
            return f"must be an object of at most {MAX_HISTOGRAMS} histograms"
        checked: dict[str, Any] = {}
        for name, hist in value.items():
            if not isinstance(hist, dict) or not 0 < len(name) <= 128:
                return f"{name!r}: must be an object {{buckets, sum, count}}"
            if NUL in name:
                return f"a histogram's name {NUL_MESSAGE}"
            buckets = hist.get("buckets")
            if isinstance(buckets, list) and len(buckets) > MAX_BUCKETS:
                return f"{name!r}: at most {MAX_BUCKETS} buckets"
            try:
                parsed = Histogram.from_json(hist)
            except VllmMetricsError as exc:
                return f"{name!r}: {exc}"
            if parsed.count < 0 or any(c < 0 for _b, c in parsed.buckets):
                return f"{name!r}: counts must not be negative"
            checked[name] = parsed.to_json()
        return (checked,)
    raise AssertionError(f"unknown field kind {kind}")


def _explain(spec: Field, value: Any, lo: float, hi: float) -> str:
    if spec.kind in ("number", "ts", "integer"):
        what = {"number": "a number", "ts": "Unix seconds", "integer": "an integer"}[spec.kind]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {what}, got {type(value).__name__}"
        if spec.kind == "integer" and isinstance(value, float) and not value.is_integer():
            return f"must be an integer, got {value}"
        if spec.kind == "ts":
            return "must be Unix seconds between 2000-01-01 and one hour from now"
        if spec.maximum is None and value > hi:  # the internal cap: BIGINT, finite numbers
            return f"must be at most {hi}, got {value}"
        # No stated maximum: the internal cap is not worth a mention.
        bounds = f">= {_fmt(lo)}" if spec.maximum is None else f"between {_fmt(lo)} and {_fmt(hi)}"
        return f"must be {bounds}, got {value}"
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if spec.choices and value not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}"
    if NUL in value:
        return NUL_MESSAGE
    return f"must be 1-{spec.max_length} characters"


def _lo(spec: Field) -> float:
    if spec.kind == "ts":
        return MIN_TS
    return -math.inf if spec.minimum is None else spec.minimum


def _hi(spec: Field, max_ts: float) -> float:
    if spec.kind == "ts":
        return max_ts
    if spec.maximum is not None:
        return spec.maximum
    # Integers land in BIGINT columns (an exact int: float(2**63 - 1) rounds up to 2**63);
    # numbers must be finite (JSON `Infinity` is refused at decode time, but an integer
    # literal can still be huge).
    return 2**63 - 1 if spec.kind == "integer" else 1e300


def _fmt(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e18:
        return str(int(value))
    return f"{value:g}"


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _add(errors: list[tuple[str, str]], field: str, message: str) -> None:
    errors.append((field, message))
    if len(errors) >= MAX_ERRORS:
        raise _TooMany
