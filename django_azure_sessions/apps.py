from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("django_azure_sessions")


class AzureSessionsConfig(AppConfig):
    name = "django_azure_sessions"
    verbose_name = "Sessions (django-azure-sessions)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from . import checks  # noqa: F401  (registers the system checks)
        from .conf import app_settings
        from .users import limit_sessions

        user_logged_in.connect(limit_sessions, dispatch_uid="django_azure_sessions.cap")
        if app_settings.WARM_UP:
            self.warm_up()

    @staticmethod
    def warm_up() -> None:
        """Build the session store's client (never connecting): see ``warm.py``."""
        from .secrets import redact
        from .warm import warm_up

        try:
            warm_up(connect=False)
        except Exception as exc:  # a system check reports the misconfiguration
            logger.warning(
                "Session store warm-up skipped; the first request builds the client: %s: %s",
                type(exc).__name__,
                redact(str(exc)),
            )
