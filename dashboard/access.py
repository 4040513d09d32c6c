"""Who may open which page: every dashboard view declares the weakest role that may use it.

`role_required("viewer")` (or `"operator"` / `"admin"`), optionally with a stronger role for
POST (`role_required("viewer", post="operator")`), wraps a view so that:
- an anonymous visitor is sent to the login page (LoginRequiredMiddleware does it too);
- a signed-in user whose role is too weak (or who has no role) gets a 403 page;
- the view carries `required_role` ({"GET": ..., "POST": ...}), which the URL-walk test
  (`tests/dashboard/test_access.py`) reads to know what every URL must answer.

Other apps' views may carry the same attribute (a dict, or "public" / "agent") so the walk
knows what to expect of them without importing the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from probes.roles import RANK, role_of

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

View = Callable[..., HttpResponseBase]


def has_role(user: Any, role: str) -> bool:
    """Whether `user` holds `role` or a stronger one (superusers are admins)."""
    held = role_of(user)
    return held is not None and RANK[held] >= RANK[role]


def role_required(role: str, *, post: str | None = None) -> Callable[[View], View]:
    """Allow GET/HEAD to `role` and up, and POST (any unsafe method) to `post` (default: role)."""
    if role not in RANK or (post is not None and post not in RANK):
        raise ValueError(f"role_required: unknown role {role!r} / {post!r}; one of {list(RANK)}")
    unsafe = post or role

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            needed = role if request.method in SAFE_METHODS else unsafe
            if not has_role(request.user, needed):
                raise PermissionDenied(f"this page needs the {needed} role")
            return view(request, *args, **kwargs)

        wrapped.required_role = {"GET": role, "POST": unsafe}  # type: ignore[attr-defined]
        return wrapped

    return decorate
