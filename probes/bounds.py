"""`advisor.engine.bounds` for Django: a field validator and a check constraint per bound.

`InBound("ttft_p95_s")` is the field validator (the admin shows its message under the field);
`in_bound_constraint(...)` is the database check with the same numbers, so a write that skips
validation (`queryset.update`, raw SQL, a script) is refused too. `stored_refusal` is what a
reader (an assessment, the fleet page) uses on a row already stored out of range, e.g. one
written before the constraint existed: it names the row and the reader skips it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import migrations, models
from django.utils.deconstruct import deconstructible

from advisor.engine.bounds import BOUNDS, Bound, DateBound, RefusedValue, shown


@deconstructible
class InBound:
    """Field validator for the bound named `name` in `advisor.engine.bounds.BOUNDS`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bound = BOUNDS[name]

    def __call__(self, value: Any) -> None:
        problem = self.bound.problem(value)
        if problem:
            raise ValidationError(problem, code="out_of_bounds", params={"value": value})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InBound) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def in_bound_constraint(
    *, model: str, field: str, bound: Bound | DateBound, null: bool = False
) -> models.CheckConstraint:
    """The database check of `bound` on `field` (NULL passes when the field is nullable)."""
    if isinstance(bound, Bound) and bound.low_open:
        low = models.Q(**{f"{field}__gt": bound.low})
    else:
        low = models.Q(**{f"{field}__gte": bound.low})
    condition = low & models.Q(**{f"{field}__lte": bound.high})
    if null:
        condition = models.Q(**{f"{field}__isnull": True}) | condition
    return models.CheckConstraint(
        condition=condition,
        name=f"{model}_{field}_in_bounds",
        violation_error_message=f"{field}: must be {bound.text}",
    )


def stored_refusal(row: models.Model, field: str, what_instead: str) -> RefusedValue | None:
    """None when `row.field` is in its bound, else what a reader reports before skipping it."""
    bound = BOUNDS[field]
    value = getattr(row, field)
    problem = bound.problem(value)
    if problem is None:
        return None
    label = f"{row._meta.app_label}.{row._meta.object_name}"
    return RefusedValue(label, row.pk, field, value, f"{problem}; {what_instead}")


def bad_rows_refuse(
    app_label: str, model_name: str, checks: dict[str, models.CheckConstraint]
) -> migrations.RunPython:
    """A migration step, run before adding `checks` (field -> constraint): stop with a list of
    the rows that break them, changing nothing.

    Adding a check constraint to a table that holds a breaking row fails anyway (PostgreSQL
    validates existing rows; SQLite copies the table into one with the check), with an error
    naming neither the row nor the value. Fixing the rows silently (clamping a price,
    emptying an SLO) would change what the organisation entered, so the person migrating
    fixes them (admin or shell) and migrates again; meanwhile assessments and the fleet page
    skip such rows by name (`stored_refusal`).
    """

    def run(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        found = []
        for field, check in checks.items():
            rows = model.objects.using(schema_editor.connection.alias).exclude(check.condition)
            for pk, value in rows.order_by("pk").values_list("pk", field)[:20]:
                found.append(
                    f"{app_label}.{model_name} #{pk} {field}={shown(value)}: {check.name} "
                    f"({check.violation_error_message})"
                )
        if found:
            raise RuntimeError(
                "rows out of bounds; fix them and migrate again (nothing was changed):\n  "
                + "\n  ".join(found)
            )

    return migrations.RunPython(run, migrations.RunPython.noop, elidable=False)
