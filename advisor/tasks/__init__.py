"""Celery tasks of the advisor app by queue: `sim`, `bench`, `rollout`; `reaper` runs on `default`.

Routing is by module name (CELERY_TASK_ROUTES: `advisor.tasks.bench.*` -> `bench`, ...).
Every module of this package is imported here so the worker's autodiscovery registers it.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
