"""``SessionMiddleware``: Django's, plus what a store outage needs.

Use it in ``MIDDLEWARE`` in place of ``django.contrib.sessions.middleware.SessionMiddleware``
(system check W003 says so when Django's is used with an engine of this package). On top of
Django's it:

- answers ``503 Service Unavailable`` with ``Retry-After`` when the session store is
  unavailable (``SessionStoreUnavailable``), instead of a 500, and renders the site's
  ``503.html`` template if it has one;
- never touches the session cookie of a request whose store failed: the cookie is neither
  deleted nor replaced, so the user is signed in again as soon as the store answers
  (``AZURE_SESSIONS["ON_UNAVAILABLE"] = "degrade"`` depends on this);
- records the device and activity of each session (``AZURE_SESSIONS["TRACK"]``): a request
  that read its session without changing it writes, at most every ``ACTIVITY_INTERVAL``
  seconds, the session's new expiry and the time only (a touch), then sends the cookie again
  so that a persistent cookie slides with it. Sessions that a request does not read are left
  alone: a request that never reads its session costs no read for this.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.template import TemplateDoesNotExist, loader
from django.utils.cache import patch_vary_headers

from .conf import app_settings
from .exceptions import SessionStoreUnavailable


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, with a 503 and an untouched cookie on a store outage, and
    activity tracking."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        observe = getattr(request.session, "observe", None)
        if observe is not None:  # an engine of this package
            observe(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session: Any = getattr(request, "session", None)
        if session is None:
            return response
        if getattr(session, "activity_due", None) is not None and session.activity_due():
            session.mark_active()  # Django's middleware below saves it and sends the cookie
        if getattr(session, "unavailable", False):
            error = getattr(session, "store_error", None)
            if (
                response.status_code == 500
                and isinstance(error, SessionStoreUnavailable)
                and app_settings.ON_UNAVAILABLE == "raise"
            ):
                # Raised where process_exception() does not see it (another middleware).
                return self.unavailable_response(request, error)
            return self._untouched(session, response)
        try:
            response = super().process_response(request, response)
        except SessionStoreUnavailable as exc:
            return self.unavailable_response(request, exc)
        if getattr(session, "unavailable", False):  # a degraded save: the cookie stays
            response.cookies.pop(settings.SESSION_COOKIE_NAME, None)
            return self._untouched(session, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, SessionStoreUnavailable):
            return self.unavailable_response(request, exception)
        return None

    @staticmethod
    def _untouched(session: Any, response: HttpResponse) -> HttpResponse:
        if session.accessed:
            patch_vary_headers(response, ("Cookie",))
        return response

    def unavailable_response(
        self, request: HttpRequest, exc: SessionStoreUnavailable
    ) -> HttpResponse:
        """The 503 a request gets when the session store is unavailable."""
        try:
            page = loader.render_to_string("503.html", {"exception": exc}, request)
        except TemplateDoesNotExist:
            response = HttpResponse(
                "Service Unavailable: the session store is not answering. Try again shortly.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        else:
            response = HttpResponse(page, status=503)
        response["Retry-After"] = str(max(1, math.ceil(app_settings.TIMEOUT)))
        patch_vary_headers(response, ("Cookie",))
        return response
