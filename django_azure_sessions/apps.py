from __future__ import annotations

from django.apps import AppConfig


class AzureSessionsConfig(AppConfig):
    name = "django_azure_sessions"
    verbose_name = "Sessions (django-azure-sessions)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from . import checks  # noqa: F401  (registers the system checks)
        from .users import limit_sessions

        user_logged_in.connect(limit_sessions, dispatch_uid="django_azure_sessions.cap")
