"""Small SQL helpers the dashboard's reads share (PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

from django.db.models import FloatField, Func


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
