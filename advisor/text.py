"""Text a client sent that PostgreSQL cannot store: the one check every entry point applies.

PostgreSQL refuses U+0000 in `text` and `jsonb` (psycopg raises before the query is sent) and
cannot encode an unpaired surrogate (U+D800..U+DFFF) as UTF-8, so either one reaching the ORM
is a 500. Django decodes query strings and form bodies with errors="replace", so surrogates
arrive only through JSON escapes ("\\ud800"); NUL arrives through any of them. Django-free:
the middleware, the API's JSON bodies and the ingest endpoint all call it.
"""

from __future__ import annotations

import re
from typing import Any

_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    found = _BAD.search(value)
    if found is None:
        return None
    code = ord(found.group())
    what = "a NUL character" if code == 0 else "an unpaired surrogate"
    return f"contains {what} (U+{code:04X}) at position {found.start()}, which cannot be stored"


def json_text_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first string (key or value) in decoded JSON that cannot be stored: (its path, why).

    Paths read like `change.title` and `nodes[2]`; a bad key is named by its parent's path and
    the key as Python writes it (`engine_args['a\\x00']`), top-level ones as `(key ...)`.
    """
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (path or "(body)", problem)
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            problem = text_problem(key_text)
            if problem is not None:
                where = f"{path}[{key_text!r}]" if path else f"(key {key_text!r})"
                return where, "the key " + problem
            found = json_text_problem(item, f"{path}.{key_text}" if path else key_text)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = json_text_problem(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
