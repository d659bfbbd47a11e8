from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from .apps import DEMO_PASSWORD, DEMO_USERNAME


def session_engine(request: HttpRequest) -> dict[str, str]:
    """The engine in use and the demo user's credentials, which every page shows."""
    return {
        "engine": settings.SESSION_ENGINE,
        "demo_username": DEMO_USERNAME,
        "demo_password": DEMO_PASSWORD,
    }
