"""A middleware of the test site that reads the session before the view, as some do."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin


class ReadSessionFirst(MiddlewareMixin):
    def process_view(self, request: HttpRequest, *args: Any) -> None:
        request.session.get("anything")
