from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProbesConfig(AppConfig):
    name = "probes"
    verbose_name = "Fleet and telemetry"

    def ready(self) -> None:
        from probes.roles import ensure_roles

        # Runs after every app's migrations so the groups always hold the newest permissions.
        post_migrate.connect(ensure_roles, dispatch_uid="probes.ensure_roles")
