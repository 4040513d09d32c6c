from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"


class DashboardAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with `dashboard.admin_site.RoleAdminSite` as its default site."""

    default = False  # not the dashboard app's own config: named explicitly in INSTALLED_APPS
    default_site = "dashboard.admin_site.RoleAdminSite"
