"""Store a value out of its bound, as a row written before the check constraints existed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, models


@contextmanager
def _checks_off(model: type[models.Model]) -> Iterator[None]:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = 1")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA ignore_check_constraints = 0")
    else:
        # PostgreSQL: DDL is transactional, so the test's transaction brings the checks back.
        # ALTER TABLE waits for no deferred foreign key check: run those now.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with connection.schema_editor(atomic=False) as editor:
            for constraint in model._meta.constraints:
                if isinstance(constraint, models.CheckConstraint):
                    editor.remove_constraint(model, constraint)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        yield


def store_out_of_bounds(row: models.Model, **values: Any) -> None:
    """`row.update(**values)` in the database, past the check constraints."""
    model = type(row)
    with _checks_off(model):
        model._default_manager.filter(pk=row.pk).update(**values)
    row.refresh_from_db()


def bound_checks(model: type[models.Model]) -> dict[str, models.CheckConstraint]:
    """The model's bound checks by field (`probes.bounds.in_bound_constraint` names them
    `<model>_<field>_in_bounds`), as `probes.bounds.bad_rows_refuse` takes them."""
    return {
        c.name.split("_", 1)[1].removesuffix("_in_bounds"): c
        for c in model._meta.constraints
        if isinstance(c, models.CheckConstraint) and c.name.endswith("_in_bounds")
    }


def run_python_step(step: Any) -> None:
    """Run a migration's RunPython step against the current models and connection, as
    `migrate` would (the step only reads rows, so the live registry serves as its state)."""
    from types import SimpleNamespace

    from django.apps import apps

    code: Any = step.code
    code(apps, SimpleNamespace(connection=connection))
