"""Security headers Django does not set itself (CSP, Permissions-Policy); text PostgreSQL refuses.

`UnstorableTextMiddleware` answers 400 to a request whose query string or form body holds
text PostgreSQL cannot store (see `advisor.text`), before any view reads it.

The policy allows scripts only from this site (Plotly.js is served from /static/vendor/,
figures travel as <script type="application/json">, drawn by /static/js/charts.js), so an
injected inline script does not run. Styles allow 'unsafe-inline' for style *attributes*
only (Plotly positions its SVG with them); style elements must come from this site, except
the two Plotly.js inserts itself, allowed by hash: an empty one it fills through the CSSOM
and its bundled map CSS. The hashes belong to plotly-4.1.1.min.js: the browser test fails on
any CSP refusal, so an upgrade that changes them is caught.
Heatmaps are drawn to a canvas and shown as data: images, hence img-src data: blob:.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from advisor.text import text_problem

PLOTLY_STYLE_HASHES = (
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # "" (rules added via CSSOM)
    "sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o=",  # its bundled maplibre-gl CSS
)
DEFAULT_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-elem 'self' " + " ".join(f"'{h}'" for h in PLOTLY_STYLE_HASHES),
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", DEFAULT_CSP)
        if policy:
            response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # Fleet costs and traces are not for shared caches or the back button of a
            # shared machine after logout.
            response.headers.setdefault("Cache-Control", "private, no-store")
        return response


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class UnstorableTextMiddleware:
    """400 naming the field when a query parameter or form field holds a NUL (U+0000).

    Every page and API view reads its query parameters and form fields through Django, so one
    check here covers them all, including the ones a view passes straight to a filter
    (`?cluster=`); PostgreSQL would refuse the value with a 500 (SQLite accepts it). JSON
    bodies are checked field by field where the API reads them (`advisor.api.bodies`).
    API paths get the API's error JSON, pages a 400 page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = _unstorable(request)
        if found is None:
            return self.get_response(request)
        field, problem = found
        if request.path.startswith("/api/"):
            return JsonResponse({"errors": [{"field": field, "message": problem}]}, status=400)
        context = {"field": field, "problem": problem}
        return render(request, "dashboard/bad_request.html", context, status=400)


def _unstorable(request: HttpRequest) -> tuple[str, str] | None:
    """The first (field, why) of the query string, then of a form body, or None."""
    sources = [request.GET]
    if request.method == "POST" and request.content_type in FORM_TYPES:
        sources.append(request.POST)
    for source in sources:
        for name, values in source.lists():
            problem = text_problem(name)
            if problem is not None:
                return repr(name), "the parameter name " + problem
            for value in values:
                problem = text_problem(value)
                if problem is not None:
                    return name, problem
    if request.method == "POST" and request.content_type == "multipart/form-data":
        for name, uploads in request.FILES.lists():
            for upload in uploads:
                problem = text_problem(upload.name or "")
                if problem is not None:
                    return name, "the file name " + problem
    return None
