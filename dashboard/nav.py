"""The navigation bar: one entry per page family, shown to the roles that may open it.

What-ifs live under their assessment (`/assessments/ID/whatif/`, `/whatifs/ID/`).
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.roles import ADMIN, VIEWER


@dataclass(frozen=True)
class NavEntry:
    label: str
    url_name: str
    role: str
    # The path prefix that marks the entry active ("/" only matches the root itself).
    prefix: str


NAV: tuple[NavEntry, ...] = (
    NavEntry("Fleet", "dashboard:home", VIEWER, "/"),
    NavEntry("GPUs", "dashboard:gpus", VIEWER, "/gpus/"),
    NavEntry("Traces", "dashboard:traces", VIEWER, "/traces/"),
    NavEntry("Assessments", "dashboard:assessments", VIEWER, "/assessments/"),
    NavEntry("Benchmarks", "dashboard:benchmarks", VIEWER, "/benchmarks/"),
    NavEntry("Reports", "dashboard:reports", VIEWER, "/reports/"),
    NavEntry("Rollouts", "dashboard:rollouts", VIEWER, "/rollouts/"),
    NavEntry("Admin", "admin:index", ADMIN, "/admin/"),
)
