"""The Django admin site, open to the admin role as well as to staff.

Roles are groups (`probes.roles`), and Django's admin only lets in `is_staff` users, so a
user given the admin role could not reach the pages the product sends admins to (benchmark
endpoints, price sheets, schedules). Rather than keep a second flag in step with the group,
the site asks the role: an active user holding the admin role (or a superuser) may enter;
what they may see and change inside is still decided by their permissions (the admin group
holds every permission of our apps). Installed as the default site by
`dashboard.apps.DashboardAdminConfig` in INSTALLED_APPS.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from dashboard.access import has_role
from probes.roles import ADMIN


class RoleAdminSite(admin.AdminSite):
    site_header = "GPU Cost Advisor administration"
    site_title = "GPU Cost Advisor admin"

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and (user.is_staff or has_role(user, ADMIN)))
