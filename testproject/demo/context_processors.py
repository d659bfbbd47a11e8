from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def session_engine(request: HttpRequest) -> dict[str, str]:
    return {"engine": settings.SESSION_ENGINE}
