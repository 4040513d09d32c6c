"""An API request's JSON body: one object holding only the fields the endpoint knows, and
only text PostgreSQL can store (no NUL, no unpaired surrogate, at any depth)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.request import Request

from advisor.text import json_text_problem


class BodyError(ValueError):
    """The body is not a JSON object ("(body)"), holds a field the endpoint does not know, or
    text that cannot be stored (named by its path, e.g. `workload.trace_name`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def json_object(request: Request, *, fields: Iterable[str]) -> dict[str, Any]:
    """The body as a dict; BodyError names "(body)", the first unknown field (by name) or the
    first string that cannot be stored (by its path)."""
    try:
        data = request.data
    except ParseError as exc:
        raise BodyError("(body)", f"not valid JSON: {exc.detail}") from exc
    if not isinstance(data, dict):
        raise BodyError("(body)", "expected a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BodyError(unknown[0], "unknown field")
    unstorable = json_text_problem(data)
    if unstorable is not None:
        raise BodyError(*unstorable)
    return data
