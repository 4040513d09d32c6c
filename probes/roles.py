"""The three roles (viewer, operator, admin) as Django groups with their permissions.

viewer: reads everything. operator: viewer + runs assessments and benchmarks, imports traces,
proposes rollouts. admin: everything in our apps (starts, pauses, aborts and rolls back
rollouts; manages nodes and prices). Permissions are named by codename so this module needs
no model imports; ones that do not exist yet (an app not migrated) are simply skipped.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
# A role may do what any weaker role may: compare ranks, never names.
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}

OUR_APPS = ("probes", "advisor", "dashboard")

# Beyond the view permissions, what an operator may do (app_label.codename).
OPERATOR_PERMISSIONS = (
    "probes.import_trace",
    "advisor.run_assessment",
    "advisor.run_benchmark",
    "advisor.propose_rollout",
)


def _permissions_for(role: str) -> list[Permission]:
    ours = Permission.objects.filter(content_type__app_label__in=OUR_APPS)
    if role == ADMIN:
        return list(ours)
    viewing = list(ours.filter(codename__startswith="view_"))
    if role == VIEWER:
        return viewing
    extra: list[Permission] = []
    for dotted in OPERATOR_PERMISSIONS:
        app_label, codename = dotted.split(".")
        extra.extend(ours.filter(content_type__app_label=app_label, codename=codename))
    return viewing + extra


def ensure_roles(**_: Any) -> None:
    """Create or refresh the role groups; idempotent, safe to run after every migrate."""
    for role in ROLES:
        group, _created = Group.objects.get_or_create(name=role)
        group.permissions.set(_permissions_for(role))


def role_of(user: Any) -> str | None:
    """The strongest role a user holds; superusers are admins."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, OPERATOR, VIEWER):
        if role in names:
            return role
    return None
