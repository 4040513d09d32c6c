"""Strategy name -> module, discovered from the package (no list to keep in sync).

A strategy module is any module of `advisor.engine.strategies` whose name does not start with
an underscore and that defines `NAME`, `ORDER` and `evaluate`; helpers live in `_`-modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType, ModuleType

import advisor.engine.strategies as package

_SKIP = {"registry"}


def _discover() -> Mapping[str, ModuleType]:
    found: list[ModuleType] = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _SKIP:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if all(hasattr(module, attr) for attr in ("NAME", "ORDER", "evaluate")):
            found.append(module)
    found.sort(key=lambda module: (module.ORDER, module.NAME))
    return MappingProxyType({module.NAME: module for module in found})


STRATEGIES: Mapping[str, ModuleType] = _discover()


def names() -> tuple[str, ...]:
    return tuple(STRATEGIES)


def get(name: str) -> ModuleType:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"strategy: unknown {name!r}; known: {list(STRATEGIES)}") from None
