"""Every URL of the project, for anonymous, no-role, viewer, operator and admin users.

The URL patterns come from the resolver, so a page added later is walked too. What a URL
must answer comes from its view's `required_role` (set by `dashboard.access.role_required`,
or by hand on another app's view, its view class or one of its DRF permission classes):
a dict {"GET": role, "POST": role}, or "public" (healthz, login) or "agent" (node-token
APIs). Views of Django's admin need staff status or the admin role (dashboard/admin_site.py).
A URL whose view declares nothing fails the walk: every page must say who may use it.

Ids in URLs are real rows (a report, a node, an assessment, a what-if, a benchmark job with a
run on a registered endpoint...), so a viewer-readable page is walked with something to show,
not a 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from advisor.models import BenchmarkEndpoint, BenchmarkJob, BenchmarkRun, JobStatus
from dashboard.access import RANK
from dashboard.models import Report, ReportStatus, WhatIf
from probes.roles import ADMIN, OPERATOR, VIEWER
from tests.dashboard.assessed import assessment_completed
from tests.dashboard.conftest import END, SmallFleet

# Views of other packages that cannot carry the attribute (URL name -> requirement).
EXTERNAL = {
    "login": "public",
    "logout": "any",  # POST signs out and redirects to the login page, GET is 405
    "admin:login": "public",
    "admin:logout": "any",
    # DRF's IsAuthenticated: any signed-in user, even one without a role, may read the schema.
    "api-schema": "authenticated",
    # Node-token API; its permission class IsNodeAgent could carry required_role = "agent".
    "probes:ingest": "agent",
}


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    requirement: Any  # "public", "agent", "staff", or {"GET": role, "POST": role}


def _patterns(
    patterns: list[URLPattern | URLResolver], prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _patterns(pattern.url_patterns, prefix + _text(pattern), inner)
        else:
            name = f"{namespace}:{pattern.name}" if namespace else (pattern.name or "")
            if namespace and not pattern.name:
                name = f"{namespace}:(unnamed {_text(pattern)})"
            yield name, prefix + _text(pattern), pattern


def _text(pattern: URLPattern | URLResolver) -> str:
    raw = pattern.pattern
    if isinstance(raw, RegexPattern):
        return str(raw).lstrip("^").rstrip("$")
    assert isinstance(raw, RoutePattern)
    return str(raw)


def _requirement(name: str, pattern: URLPattern) -> Any:
    if name in EXTERNAL:
        return EXTERNAL[name]
    if name.startswith("admin:"):
        return "staff"
    callback = pattern.callback
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    for holder in (callback, view_class, *getattr(view_class, "permission_classes", ())):
        requirement = getattr(holder, "required_role", None)
        if requirement is not None:
            return requirement
    return None


def _fill(path: str, values: dict[str, str]) -> str:
    """Put fixture values into <converter:name> and (?P<name>...) parts of a route."""

    def value(name: str) -> str:
        if name not in values:
            raise AssertionError(f"URL {path!r}: no fixture value for {name!r}; add it")
        return values[name]

    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: value(m.group(1)), path)
    return "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: value(m.group(1)), path)


def routes(values: dict[str, str]) -> list[Route]:
    found = []
    for name, path, pattern in _patterns(get_resolver().url_patterns):
        found.append(Route(name, _fill(path, values), _requirement(name, pattern)))
    return found


@pytest.fixture
def url_values(small_fleet: SmallFleet, settings: Any, tmp_path: Path) -> dict[str, str]:
    settings.MEDIA_ROOT = tmp_path
    report = Report.objects.create(
        cluster=small_fleet.cluster, window_start=END - timedelta(days=7), window_end=END,
        status=ReportStatus.READY,
    )  # fmt: skip
    report.pdf.save("r.pdf", ContentFile(b"%PDF-1.7 test"))
    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    whatif = WhatIf.objects.create(assessment=assessment, changes={"prices": {"H100-SXM": 2}})
    # Nothing listens here: the walk reads stored jobs and runs, it starts no load.
    endpoint = BenchmarkEndpoint.objects.create(
        node=small_fleet.node, deployment=small_fleet.deployment, base_url="http://127.0.0.1:9",
        hardware="H100-SXM", model_ref="Llama-3-8B",
    )  # fmt: skip
    workload = {"kind": "concurrency", "num_requests": 8, "concurrency": 4, "prompt_tokens": 16,
                "output_tokens": 8}  # fmt: skip
    job = BenchmarkJob.objects.create(
        endpoint=endpoint, kind="run", spec={"workload": workload}, max_concurrency=4,
        max_duration_s=60, status=JobStatus.COMPLETED,
    )  # fmt: skip
    run = BenchmarkRun.objects.create(
        job=job, sequence=1, label="c=4", status="completed", started_at=END, duration_s=1.0,
        workload=workload, summary={"completed": 8, "output_throughput": 64.0},
    )  # fmt: skip
    return {
        "report_id": str(report.pk),
        "node_id": str(small_fleet.node.pk),
        "gpu_id": str(small_fleet.busy.pk),
        "deployment_id": str(small_fleet.deployment.pk),
        "cluster_id": str(small_fleet.cluster.pk),
        "rollout_id": "999999",  # no such rollout: admins get 404, weaker roles 403 first
        "job_id": str(job.pk),
        "assessment_id": str(assessment.pk),
        "whatif_id": str(whatif.pk),
        "run_id": str(run.pk),
        "endpoint_id": str(endpoint.pk),
        # Django admin
        "object_id": "1",
        "content_type_id": "1",
        "id": "1",
        "app_label": "probes",
        "url": "no-such-page/",
    }


@pytest.fixture
def users(alice: User, bob: User, carol: User, db: Any) -> dict[str, User | None]:
    nobody = User.objects.create_user("dave", "dave@example.org", "password")  # no role
    return {"anonymous": None, "no role": nobody, VIEWER: carol, OPERATOR: bob, ADMIN: alice}


def _role_rank(who: str) -> int:
    return RANK.get(who, 0)


def _check(route: Route, who: str, method: str, status: int, location: str) -> str | None:
    """None when `status` is what `who` must get, else what was wrong."""
    requirement = route.requirement
    to_login = status == 302 and location.startswith((settings.LOGIN_URL, "/admin/login/"))
    denied = status in (401, 403) or to_login
    if status >= 500:
        return f"server error {status}"
    if requirement == "any":
        return None
    if requirement == "public":
        return "denied a public page" if denied else None
    if requirement == "authenticated":
        if who == "anonymous":
            return None if denied else f"{status}: anonymous was let in"
        return f"{status}: denied a signed-in user" if denied else None
    if requirement == "agent":
        return None if status in (401, 403) else f"{status}: only node agents may call it"
    if requirement == "staff":
        # Nobody in the walk is staff; the admin role may enter (its permissions then decide:
        # 403 on models outside our apps), everyone else is sent to the admin's login.
        if who == ADMIN:
            return f"{status} {location}: the admin role was sent to log in" if to_login else None
        return None if to_login else f"{status} {location}: the admin let a non-admin in"
    needed = requirement[method]
    if who == "anonymous":
        return None if denied else f"{status}: anonymous was let in"
    if _role_rank(who) >= RANK[needed]:
        return f"{status}: denied although {who} >= {needed}" if denied else None
    return None if status == 403 else f"{status}: {who} < {needed} must get 403"


@pytest.mark.django_db
def test_every_url_answers_each_role_as_its_view_declares(
    url_values: dict[str, str], users: dict[str, User | None]
) -> None:
    walked = routes(url_values)
    undeclared = [r.name or r.path for r in walked if r.requirement is None]
    assert undeclared == [], "views without required_role (see dashboard/access.py)"
    problems = []
    for who, user in users.items():
        client = Client()
        if user is not None:
            client.force_login(user)
        for route in walked:
            for method in ("GET", "POST"):
                response = getattr(client, method.lower())(route.path)
                if user is not None and "logout" in route.name:
                    client.force_login(user)  # that request may have signed it out
                problem = _check(
                    route, who, method, response.status_code, response.get("Location", "")
                )
                if problem:
                    problems.append(f"{method} {route.path} ({route.name}) as {who}: {problem}")
    assert problems == []
    # The walk covered the pages it must (a resolver change that hid them would pass empty).
    names = {route.name for route in walked}
    assert {
        "healthz", "dashboard:home", "dashboard:trace-upload", "probes:ingest",
        "dashboard:assessment", "dashboard:assessment-whatif", "dashboard:whatif",
        "dashboard:benchmark", "dashboard:benchmark-compare", "admin:index",
    } <= names  # fmt: skip


@pytest.mark.django_db
def test_the_walk_would_catch_a_page_without_a_role_check(url_values: dict[str, str]) -> None:
    route = Route("x", "/", {"GET": OPERATOR, "POST": OPERATOR})
    assert _check(route, VIEWER, "GET", 200, "") == "200: viewer < operator must get 403"
    assert _check(route, "anonymous", "GET", 200, "") == "200: anonymous was let in"
    assert _check(route, ADMIN, "GET", 403, "") == "403: denied although admin >= operator"
    assert _check(Route("h", "/healthz", "public"), "anonymous", "GET", 302, "/accounts/login/")


@pytest.mark.django_db
def test_csrf_protects_form_posts(client: Client, bob: User, small_fleet: SmallFleet) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(bob)
    response = csrf_client.post("/traces/import/", {"deployment": small_fleet.deployment.pk})
    assert response.status_code == 403
    page = csrf_client.get("/traces/import/")
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    response = csrf_client.post(
        "/traces/import/", {"deployment": small_fleet.deployment.pk, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 400  # past CSRF; the form names the missing fields
    assert b"file: This field is required." in response.content


@pytest.mark.django_db
def test_the_admin_role_enters_the_django_admin_and_others_do_not(
    client: Client, alice: User, bob: User, small_fleet: SmallFleet
) -> None:
    assert not alice.is_staff  # an admin by group only
    assert not alice.is_superuser
    client.force_login(alice)
    index = client.get("/admin/")
    assert index.status_code == 200
    # inside, the admin group's permissions decide: our apps' models, e.g. the price sheet
    assert 'href="/admin/probes/pricesheet/"' in index.content.decode()
    assert client.get("/admin/probes/pricesheet/add/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 403  # not an admin-role permission
    nav = client.get("/").content.decode().split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'href="/admin/"' in nav

    client.force_login(bob)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    nav = client.get("/").content.decode().split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'href="/admin/"' not in nav
