from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "azure-sessions-demo"  # shown on the sign-in page; the demo runs on 127.0.0.1


def create_demo_user(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """Create the demo user (a superuser, so the admin can be seen too) unless it exists."""
    from django.contrib.auth import get_user_model

    users = get_user_model()._default_manager.db_manager(using)
    if not users.filter(username=DEMO_USERNAME).exists():
        users.create_superuser(DEMO_USERNAME, "demo@example.invalid", DEMO_PASSWORD)


class DemoConfig(AppConfig):
    name = "testproject.demo"
    label = "demo"
    verbose_name = "Session demo"

    def ready(self) -> None:
        post_migrate.connect(create_demo_user, sender=self)
