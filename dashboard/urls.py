"""Dashboard pages (mounted at the site root by config.urls)."""

from django.urls import URLPattern, URLResolver, path

from dashboard import views

app_name = "dashboard"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
]
