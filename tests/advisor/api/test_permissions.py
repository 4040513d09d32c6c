"""The API's role check: each view's `required_role`, or its `required_permission` for writes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
DRF_DENIED = "You do not have permission to perform this action."
ROLE_DENIED = "your role may not do this"


def _call(user: User | None, method: str, path: str) -> tuple[int, Any]:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    response = getattr(client, method)(path, {}, format="json")
    return response.status_code, response.json()


def test_it_refuses_each_role_below_the_views_with_its_message(
    alice: User, bob: User, carol: User
) -> None:
    nobody = User.objects.create_user("dave", "dave@example.org", "password")
    assert _call(None, "get", "/api/v1/rollouts/") == (
        403, {"detail": "Authentication credentials were not provided."}
    )  # fmt: skip
    assert _call(nobody, "get", "/api/v1/rollouts/") == (403, {"detail": ROLE_DENIED})
    assert _call(nobody, "get", "/api/v1/benchmarks/") == (403, {"detail": DRF_DENIED})
    assert _call(nobody, "get", "/api/v1/assessments/") == (403, {"detail": DRF_DENIED})
    assert _call(carol, "post", "/api/v1/rollouts/") == (403, {"detail": ROLE_DENIED})
    assert _call(bob, "post", "/api/v1/rollouts/1/start/") == (403, {"detail": ROLE_DENIED})
    assert _call(bob, "get", "/api/v1/rollouts/1/start/") == (403, {"detail": ROLE_DENIED})
    assert _call(carol, "post", "/api/v1/benchmarks/") == (403, {"detail": DRF_DENIED})
    assert _call(carol, "post", "/api/v1/assessments/") == (403, {"detail": DRF_DENIED})
    # Past the check: the view answers (no such rollout, a missing field).
    assert _call(alice, "post", "/api/v1/rollouts/1/start/")[0] == 404
    assert _call(carol, "get", "/api/v1/rollout-ledger/") == (200, [])
    assert _call(bob, "post", "/api/v1/assessments/")[0] == 400


def test_it_lets_the_named_permission_decide_writes(carol: User) -> None:
    carol.user_permissions.add(Permission.objects.get(codename="run_benchmark"))
    carol = User.objects.get(pk=carol.pk)  # a fresh permission cache
    status, body = _call(carol, "post", "/api/v1/benchmarks/")
    assert status == 400  # past the check, though a viewer: the body names what is missing
    assert body["errors"][0]["field"] == "endpoint"
    assert _call(carol, "post", "/api/v1/assessments/") == (403, {"detail": DRF_DENIED})
