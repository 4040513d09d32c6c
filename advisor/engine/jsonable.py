"""Dataclasses <-> JSON types, driven by the type hints (for results stored as JSON).

`to_plain(obj)` turns dataclasses, tuples, mappings and numpy scalars into dicts, lists and
plain numbers; non-finite floats become the strings "Infinity", "-Infinity" and "NaN" (JSON
has no such numbers and PostgreSQL's jsonb refuses them). `from_plain(cls, data)` rebuilds
the dataclass from what `to_plain` wrote, checking types and naming the path of a bad value.
Supported field types: bool, int, float, str, None, Literal, X | None, tuple[X, ...],
Mapping[str, X] / dict[str, X], nested dataclasses, and `JsonValue` (any JSON, kept as is).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

import numpy as np

JsonValue = Any  # any JSON value, stored as is (strategy-specific details)

_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}

T = TypeVar("T")


class PlainError(ValueError):
    """Data does not match the dataclass; the message starts with the path of the bad value."""


def _float_out(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def to_plain(value: Any) -> Any:
    """JSON types for a dataclass tree (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [to_plain(item) for item in value.tolist()]
    raise TypeError(f"cannot make {type(value).__name__} plain JSON")


def from_plain(cls: type[T], data: Any, path: str = "") -> T:
    """Rebuild a dataclass of type `cls` from `to_plain` output."""
    return typing.cast(T, _read(cls, data, path))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = typing.get_type_hints(cls)
        _HINTS[cls] = found
    return found


def _where(path: str) -> str:
    return path or "(top)"


def _read(kind: Any, data: Any, path: str) -> Any:
    if kind is Any:
        return data
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _read(option, data, path)
            except PlainError as exc:
                errors.append(str(exc))
        raise PlainError(errors[0] if errors else f"{_where(path)}: unexpected null")
    if origin is typing.Literal:
        if data not in typing.get_args(kind):
            raise PlainError(
                f"{_where(path)}: must be one of {typing.get_args(kind)}, got {data!r}"
            )
        return data
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(data, list):
            raise PlainError(f"{_where(path)}: must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise PlainError(f"{_where(path)}: must have {len(args)} items")
        pairs = enumerate(zip(args, data, strict=True))
        return tuple(_read(arg, item, f"{path}[{i}]") for i, (arg, item) in pairs)
    if origin in (dict, Mapping, typing.Mapping) or kind in (dict, Mapping):
        args = typing.get_args(kind) or (str, Any)
        if not isinstance(data, dict):
            raise PlainError(f"{_where(path)}: must be an object")
        return {key: _read(args[1], item, f"{path}.{key}") for key, item in data.items()}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(data, dict):
            raise PlainError(f"{_where(path)}: must be an object")
        hints = _hints(kind)
        names = {f.name for f in dataclasses.fields(kind) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise PlainError(f"{path}.{unknown[0]}: unknown field")
        kwargs = {}
        for name in names:
            sub = f"{path}.{name}" if path else name
            if name in data:
                kwargs[name] = _read(hints[name], data[name], sub)
        try:
            return kind(**kwargs)
        except TypeError as exc:
            raise PlainError(f"{_where(path)}: {exc}") from None
    if kind is float:
        if isinstance(data, str) and data in _NON_FINITE:
            return _NON_FINITE[data]
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise PlainError(f"{_where(path)}: must be a number, got {data!r}")
        return float(data)
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise PlainError(f"{_where(path)}: must be an integer, got {data!r}")
        return data
    if kind is bool:
        if not isinstance(data, bool):
            raise PlainError(f"{_where(path)}: must be true or false, got {data!r}")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise PlainError(f"{_where(path)}: must be a string, got {data!r}")
        return data
    if kind is type(None):
        if data is not None:
            raise PlainError(f"{_where(path)}: must be null")
        return None
    raise PlainError(f"{_where(path)}: unsupported type {kind!r}")
