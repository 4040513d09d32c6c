"""Small SQL helpers the dashboard's reads share (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import FloatField, Func, QuerySet


class Epoch(Func):
    """A datetime column as Unix seconds (float), so numpy gets numbers, not datetimes.

    Converting 100k timestamps to Python datetimes costs more than the query itself.
    """

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            # date_part gives float8 directly; EXTRACT goes through numeric (2x slower).
            compiler,
            connection,
            template="date_part('epoch', %(expressions)s)",
            **extra,
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # julianday() is exact to well under a millisecond at today's dates.
        return self.as_sql(
            compiler,
            connection,
            template="ROUND((julianday(%(expressions)s) - 2440587.5) * 86400.0, 3)",
            **extra,
        )


def fetch_array(queryset: QuerySet[Any], fields: Sequence[str] | None) -> np.ndarray:
    """The queryset's `fields` (None: its own values() columns) as a float64 array, one row
    per result row (None -> NaN), skipping the ORM's per-row converters: for 100k rows they
    cost more than the query.

    On PostgreSQL the columns travel as one float8 array each (`array_agg`), in binary
    through a server-side-binding psycopg cursor on Django's connection: no Python tuple
    per row and no float text formatting and parsing (70k rows x 3: 80 ms instead of 160 ms
    for rows as text). The Django cursor wrapper (query logging) is bypassed for this one
    read.
    """
    query = queryset if fields is None else queryset.values_list(*fields)
    try:
        sql, params = query.query.sql_with_params()
    except EmptyResultSet:  # e.g. `gpu_id__in=[]`: nothing can match, so no SQL is written
        return np.zeros((0, len(fields) if fields is not None else len(query.query.values_select)))
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0", params)
            names = [column.name for column in cursor.description or ()]
            arrays = ", ".join(f'array_agg(q."{name}"::float8)' for name in names)
            cursor.execute(f"SELECT {arrays} FROM ({sql}) AS q", params, binary=True)
            columns = cursor.fetchone()
        if columns is None or columns[0] is None:
            return np.zeros((0, len(names)))
        return np.array(columns, dtype=np.float64).T.reshape(-1, len(names))
    with connection.cursor() as django_cursor:
        django_cursor.execute(sql, params)
        rows = django_cursor.fetchall()
        width = len(django_cursor.description)
    return np.array(rows, dtype=np.float64).reshape(-1, width)
