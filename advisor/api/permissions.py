"""Who may call an API view: the role the view declares for the method, or a stronger one.

A view sets `required_role = {"GET": role, "POST": role}` (safe methods go by "GET", every
other by "POST"); the URL-walk test (`tests/dashboard/test_access.py`) reads the same
attribute to know what each URL must answer. A view may also name `required_permission`
(`app_label.codename`): then that Django permission, not the role's rank, decides unsafe
methods (the operator group is granted it by `probes.roles.OPERATOR_PERMISSIONS`).
A user without a role is always refused. `denied_message`, where a view sets it, is the
403's `detail`; elsewhere DRF's own message.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from probes.roles import RANK, role_of


class HasRequiredRole(permissions.BasePermission):
    """The view's `required_role[method]` or a stronger role (or its `required_permission`)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        # DRF reads `message` off this instance (one per request) when it refuses.
        self.message = getattr(view, "denied_message", None)
        role = role_of(request.user)
        if role is None:
            return False
        if request.method in permissions.SAFE_METHODS:
            return RANK[role] >= RANK[view.required_role["GET"]]
        permission = getattr(view, "required_permission", None)
        if permission is not None:
            return bool(request.user.has_perm(permission))
        return RANK[role] >= RANK[view.required_role["POST"]]
