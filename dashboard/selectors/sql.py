"""Small SQL helpers the dashboard's reads share (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import FloatField, Func, QuerySet


class Epoch(Func):
    """A datetime column as Unix seconds (float), so numpy gets numbers, not datetimes.

    Converting 100k timestamps to Python datetimes costs more than the query itself.
    """

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra
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
    """The queryset's `fields` (None: its own values() columns) as a float64 array (None ->
    NaN), skipping the ORM's per-row converters: for 100k rows they cost more than the query.
    """
    query = queryset if fields is None else queryset.values_list(*fields)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        width = len(cursor.description)
    return np.array(rows, dtype=np.float64).reshape(-1, width)
