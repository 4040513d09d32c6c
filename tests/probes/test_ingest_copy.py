"""The column-wise binary COPY encoder: psycopg's own bytes, NULL patterns, a real COPY."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from psycopg.copy import Copy

from probes.ingest.copy import encode_columns

KINDS = ("int8", "ts", "float8", "int8", "float8", "float8")
TS = 1_767_225_600.123457  # a Unix instant with microseconds


def _psycopg_bytes(kinds: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    """What psycopg's write_row sends for the same rows (ts as int8 us since 2000)."""
    types = ["int8" if kind == "ts" else kind for kind in kinds]
    ts_at = [i for i, kind in enumerate(kinds) if kind == "ts"]
    with connection.cursor() as cursor:
        copy = Copy(cursor.cursor, binary=True)
        copy.set_types(types)
        out = b""
        for row in rows:
            values = list(row)
            for i in ts_at:
                if values[i] is not None:
                    values[i] = round((values[i] - 946_684_800) * 1_000_000)
            out += bytes(copy.formatter.write_row(values))
        return out + bytes(copy.formatter.end())


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


@pytest.mark.django_db
def test_it_sends_the_bytes_psycopg_sends_for_the_same_rows() -> None:
    rows = [(7, TS + i * 0.25, 37.5 + i, 41_000_000_000 + i, 412.5, -0.0) for i in range(5)]
    assert encode_columns(KINDS, _columns(rows), 5) == _psycopg_bytes(KINDS, rows)


@pytest.mark.django_db
def test_rows_with_nulls_in_different_columns_are_grouped_by_pattern() -> None:
    rows = [
        (1, TS, 10.0, 5, None, 1.0),
        (2, TS + 1, 20.0, 6, 300.0, None),
        (3, TS + 2, 30, 7, None, 3.0),  # an int in a float column
        (4, TS + 3, 40.0, 8, 400.0, None),
    ]
    encoded = encode_columns(KINDS, _columns(rows), 4)
    as_floats = [(*row[:2], float(row[2]), *row[3:]) for row in rows]
    expected = _psycopg_bytes(KINDS, as_floats)
    # COPY does not keep row order: the same tuples, grouped by which columns are NULL.
    assert sorted(_tuples(encoded)) == sorted(_tuples(expected))
    assert _tuples(encoded)[:2] == [_tuples(expected)[i] for i in (0, 2)]
    assert len(encoded) == len(expected)


def test_a_column_left_out_is_null_in_every_row_and_none_means_no_rows() -> None:
    one = encode_columns(("int8", "float8"), [[1, 2], None], 2)
    both_null = encode_columns(("int8", "float8"), [[1, 2], [None, None]], 2)
    assert one == both_null
    assert encode_columns(("int8",), [[]], 0) == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"
    with pytest.raises(ValueError, match="column 1 has 1 values"):
        encode_columns(("int8", "float8"), [[1, 2], [1.0]], 2)


@pytest.mark.django_db(transaction=True)
def test_a_real_copy_stores_exact_values() -> None:
    rows = [(i, TS + i / 1e6, 0.1 * i, 2**62 + i, None if i % 3 else 1e-300) for i in range(50)]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE copy_check (a bigint, ts timestamptz, f float8, b bigint, g float8)"
        )
        data = encode_columns(("int8", "ts", "float8", "int8", "float8"), _columns(rows), 50)
        with cursor.cursor.copy("COPY copy_check FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        cursor.execute(
            "SELECT a, extract(epoch FROM ts)::numeric(20, 6), f, b, g FROM copy_check ORDER BY a"
        )
        stored = cursor.fetchall()
    assert [(a, f, b, g) for a, _ts, f, b, g in stored] == [
        (a, f, b, g) for a, _ts, f, b, g in rows
    ]
    assert [float(ts) for _a, ts, *_rest in stored] == pytest.approx(
        [ts for _a, ts, *_rest in rows], abs=1e-6
    )


def _tuples(stream: bytes) -> list[bytes]:
    """Split a binary COPY stream into its tuples (bytes of each)."""
    body = stream[19:-2]
    tuples, at = [], 0
    while at < len(body):
        start = at
        fields = int.from_bytes(body[at : at + 2], "big", signed=True)
        at += 2
        for _ in range(fields):
            size = int.from_bytes(body[at : at + 4], "big", signed=True)
            at += 4 + max(size, 0)
        tuples.append(body[start:at])
    return tuples
