"""Bulk insert that skips rows already stored: COPY on PostgreSQL, executemany on SQLite.

PostgreSQL: rows are COPYed straight into the table in binary format (no text parsing of
floats on the server; half the database time of the staged path) inside a savepoint. If a
row is already present (same GPU and instant, re-sent after an agent restart) that COPY
fails on the unique key; the savepoint is rolled back and the rows go the slower way: COPY
into a temporary staging table and one `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, so
the duplicates are skipped instead of failing the batch. SQLite (the demo) gets the same
semantics with `INSERT OR IGNORE`.

`bulk_insert_columns` takes the rows column-wise (the ingest API's GPU samples) and
encodes the binary COPY stream a column at a time (`probes.ingest.copy`), a third of the
CPU of formatting row by row; it leaves conflicts to the caller (see there).

Runs inside the caller's transaction; returns how many rows were inserted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, models, transaction
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from probes.ingest.copy import encode_columns

# PostgreSQL's timestamp epoch, 2000-01-01T00:00:00Z, in Unix seconds.
PG_EPOCH_S = 946_684_800
# Django column types -> the PostgreSQL type names binary COPY needs to encode values.
_BINARY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "double precision": "float8",
    "timestamp with time zone": "timestamptz",
    "jsonb": "jsonb",
    "boolean": "bool",
}


def bulk_insert_ignoring_conflicts(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    ts_columns: frozenset[str] = frozenset(),
    json_columns: frozenset[str] = frozenset(),
) -> int:
    """Insert `rows` (values in `columns` order, timestamps as Unix seconds) into `model`."""
    insert = _Insert(model, columns, list(rows), ts_columns, json_columns)
    if not insert.rows:
        return 0
    if connection.vendor != "postgresql":
        return _insert_sqlite(insert)
    if not _has_unique_key(model):
        return _copy_direct(insert)
    try:
        with transaction.atomic():  # a savepoint: a duplicate row must not abort the batch
            return _copy_direct(insert)
    except pg_errors.UniqueViolation:
        return _copy_staged(insert)


class RowsAlreadyStored(Exception):
    """A plain COPY met a row already stored; the caller's transaction must be rolled back."""


def bulk_insert_columns(
    model: type[models.Model],
    columns: Sequence[str],
    values: Sequence[Sequence[Any] | None],
    length: int,
    *,
    ts_columns: frozenset[str] = frozenset(),
    skip_conflicts: bool,
) -> int:
    """Insert `length` rows given as one sequence per column (None: all NULL) into `model`.

    Numeric columns only (bigint, integer, double precision; `ts_columns` hold Unix
    seconds). Without `skip_conflicts` the rows are COPYed straight in and a row already
    stored raises RowsAlreadyStored, leaving the transaction aborted: no savepoint (two
    round trips and Django's bookkeeping per batch); the caller rolls back and calls again
    with `skip_conflicts`, which takes the staged path and skips such rows.
    """
    if not length:
        return 0
    if connection.vendor != "postgresql":
        return _insert_sqlite(_Insert(model, columns, _transpose(values, length), ts_columns))
    if skip_conflicts:
        return _copy_staged(_Insert(model, columns, _transpose(values, length), ts_columns))
    # A column that is NULL in every row is left out of the COPY (its default is NULL).
    present = [(column, value) for column, value in zip(columns, values, strict=True) if value]
    sql, kinds = _column_copy(model, tuple(column for column, _ in present), ts_columns)
    data = encode_columns(kinds, [value for _, value in present], length)
    try:
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            copy.write(data)
    except pg_errors.UniqueViolation as exc:
        raise RowsAlreadyStored(str(exc)) from exc
    return length


@functools.cache
def _column_copy(
    model: type[models.Model], columns: tuple[str, ...], ts_columns: frozenset[str]
) -> tuple[str, tuple[str, ...]]:
    """The COPY statement and the kinds `encode_columns` needs (once per model and columns)."""
    fields = _fields(model)
    kinds = []
    for column in columns:
        db_type = fields[column].db_type(connection)
        if column in ts_columns:
            kinds.append("ts")
        elif db_type in ("bigint", "integer"):
            kinds.append("int8" if db_type == "bigint" else "int4")
        elif db_type == "double precision":
            kinds.append("float8")
        else:
            raise ValueError(f"{model.__name__}.{column}: {db_type} is not a numeric column")
    return _binary_copy_sql(model._meta.db_table, columns), tuple(kinds)


def _transpose(values: Sequence[Sequence[Any] | None], length: int) -> list[Sequence[Any]]:
    columns = [column if column is not None else [None] * length for column in values]
    return list(zip(*columns, strict=True))


@dataclass(frozen=True)
class _Insert:
    """What each insert path is given: `rows` of values in `columns` order for `model`."""

    model: type[models.Model]
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    ts_columns: frozenset[str] = frozenset()  # Unix seconds
    json_columns: frozenset[str] = frozenset()

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def quoted(self) -> str:
        """The column list of the INSERT or COPY."""
        return _quoted(self.columns)

    def indexes(self, of: frozenset[str]) -> list[int]:
        """Where in a row the columns that are among `of` stand."""
        return [i for i, column in enumerate(self.columns) if column in of]


def _copy_direct(insert: _Insert) -> int:
    fields = _fields(insert.model)
    types = []
    for column in insert.columns:
        db_type = fields[column].db_type(connection) or "text"
        # A timestamptz travels in binary COPY as int8 microseconds since 2000-01-01 UTC:
        # sending that integer spares building a datetime per row.
        types.append("int8" if column in insert.ts_columns else _BINARY_TYPES.get(db_type, "text"))
    ts_indexes = insert.indexes(insert.ts_columns)
    json_indexes = insert.indexes(insert.json_columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(_binary_copy_sql(insert.table, insert.columns)) as copy:
            copy.set_types(types)
            for row in insert.rows:
                values = list(row)
                for i in ts_indexes:
                    values[i] = round((values[i] - PG_EPOCH_S) * 1_000_000)
                for i in json_indexes:
                    if values[i] is not None:
                        values[i] = Jsonb(values[i])
                copy.write_row(values)
    return len(insert.rows)


def _copy_staged(insert: _Insert) -> int:
    ts_columns, json_columns = insert.ts_columns, insert.json_columns
    stage = f"_stage_{insert.table}"
    fields = _fields(insert.model)
    definitions = []
    for column in insert.columns:
        if column in ts_columns:
            definitions.append(f'"{column}" float8')
        elif column in json_columns:
            definitions.append(f'"{column}" text')
        else:
            definitions.append(f'"{column}" {fields[column].db_type(connection)}')
    selected = ", ".join(
        f'to_timestamp("{c}")' if c in ts_columns else f'"{c}"::jsonb' if c in json_columns
        else f'"{c}"'
        for c in insert.columns
    )  # fmt: skip
    json_indexes = insert.indexes(json_columns)
    with connection.cursor() as cursor:
        # Every time, not cached per connection: a CREATE inside a rolled-back transaction is
        # undone. ON COMMIT DELETE ROWS empties it for the next batch.
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" ({", ".join(definitions)}) '
            "ON COMMIT DELETE ROWS"
        )
        # Rows left by an earlier call in this transaction must not be inserted again.
        cursor.execute(f'DELETE FROM "{stage}"')
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f'COPY "{stage}" ({insert.quoted}) FROM STDIN') as copy:
            if json_indexes:
                for row in insert.rows:
                    copy.write_row(_dump_json(row, json_indexes))
            else:
                for row in insert.rows:
                    copy.write_row(row)
        cursor.execute(
            f'INSERT INTO "{insert.table}" ({insert.quoted}) SELECT {selected} FROM "{stage}" '
            "ON CONFLICT DO NOTHING"
        )
        inserted: int = cursor.rowcount
    return inserted


def _insert_sqlite(insert: _Insert) -> int:
    ts_indexes = insert.indexes(insert.ts_columns)
    json_indexes = insert.indexes(insert.json_columns)
    adapt = connection.ops.adapt_datetimefield_value
    converted = []
    for row in insert.rows:
        values = _dump_json(row, json_indexes)
        for i in ts_indexes:
            if values[i] is not None:
                values[i] = adapt(datetime.fromtimestamp(values[i], UTC))
        converted.append(values)
    marks = ", ".join("%s" for _ in insert.columns)
    with connection.cursor() as cursor:
        cursor.executemany(
            f'INSERT OR IGNORE INTO "{insert.table}" ({insert.quoted}) VALUES ({marks})', converted
        )
        inserted: int = cursor.rowcount
    return inserted


def _fields(model: type[models.Model]) -> dict[str | None, models.Field[Any, Any]]:
    """The model's concrete fields by column name."""
    return {field.column: field for field in model._meta.concrete_fields}


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _binary_copy_sql(table: str, columns: Sequence[str]) -> str:
    return f'COPY "{table}" ({_quoted(columns)}) FROM STDIN (FORMAT BINARY)'


def _has_unique_key(model: type[models.Model]) -> bool:
    """Can a row conflict with one already stored? (a composite primary key or a unique
    constraint; a plain auto-increment id never conflicts)."""
    if isinstance(model._meta.pk, models.CompositePrimaryKey):
        return True
    constraints = model._meta.constraints
    return any(isinstance(c, models.UniqueConstraint) for c in constraints) or bool(
        model._meta.unique_together
    )


def _dump_json(row: Sequence[Any], indexes: list[int]) -> list[Any]:
    values = list(row)
    for i in indexes:
        if values[i] is not None:
            values[i] = json.dumps(values[i], separators=(",", ":"))
    return values
