from typing import Any

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView

from dashboard.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("probes.urls")),
    path("api/v1/", include("advisor.urls")),
    path("", include("dashboard.urls")),
]


def not_found(request: HttpRequest, exception: Any) -> HttpResponse:
    """API clients get the API's error shape; people get the 404 page."""
    if request.path.startswith("/api/"):
        message = f"no API resource at {request.path}"
        return JsonResponse({"errors": [{"field": "(path)", "message": message}]}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found
