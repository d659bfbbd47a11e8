"""The page "Where you are signed in": a user's sessions, with buttons to sign out of one
or of all the others.

Include ``django_azure_sessions.urls`` (say at ``account/sessions/``). The page extends the
template named by ``AZURE_SESSIONS["BASE_TEMPLATE"]`` (by default the package's own small
layout, ``django_azure_sessions/base.html``) and fills its blocks ``title`` and ``content``.
Results are reported through ``django.contrib.messages``; the page shows them itself unless
the layout has shown them already.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_POST

from .conf import app_settings
from .core.activity import Device
from .core.storage import Record
from .users import sign_out, sign_out_everywhere, stored_id, user_sessions

JUST_NOW = datetime.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """One of the user's sessions as the page shows it."""

    id: str  # what the page's forms send back: never a session key
    current: bool
    device: str  # "Firefox on Windows"
    location: str | None  # "Lyon, France", where GeoIP2 is set up
    address: str | None  # "203.0.113.0/24", when TRACK has "ip"
    signed_in: datetime.datetime | None
    last_active: datetime.datetime | None
    signed_in_ago: str | None
    last_active_ago: str | None

    @classmethod
    def of(cls, record: Record, current: str | None, now: datetime.datetime) -> SignedIn:
        device = Device.of(record) or Device()
        return cls(
            id=public_id(record.key),
            current=record.key == current,
            device=device.browser,
            location=device.location,
            address=device.address,
            signed_in=record.created,
            last_active=record.updated,
            signed_in_ago=ago(record.created, now),
            last_active_ago=ago(record.updated, now),
        )


def public_id(stored: str) -> str:
    """The id under which the page names a session. The stored id is the SHA-256 of the key,
    but with ``HASH_KEYS`` off it is the key itself, which no page may show: then its hash."""
    return stored if app_settings.HASH_KEYS else hashlib.sha256(stored.encode()).hexdigest()


def ago(moment: datetime.datetime | None, now: datetime.datetime) -> str | None:
    """Like "5 minutes ago" or "just now" (django.utils.timesince: no app to install)."""
    if moment is None:
        return None
    if now - moment < JUST_NOW:
        return gettext("just now")
    return gettext("%(time)s ago") % {"time": timesince(moment, now, depth=1)}


def logout_url() -> str | None:
    """Where the default layout's "Sign out" button posts: the site's URL named "logout"."""
    try:
        return reverse("logout")
    except NoReverseMatch:
        return None


@login_required
def sessions(request: HttpRequest) -> HttpResponse:
    current = stored_id(request.session)
    now = timezone.now()
    rows = [SignedIn.of(record, current, now) for record in user_sessions(request.user)]
    oldest = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    rows.sort(key=lambda row: (row.current, row.last_active or oldest), reverse=True)
    context = {
        "base_template": app_settings.BASE_TEMPLATE,
        "user": request.user,  # for the layout, without the auth context processor too
        "sessions": rows,
        "current": current,
        "others": sum(not row.current for row in rows),
        "logout_url": logout_url(),
    }
    return TemplateResponse(request, "django_azure_sessions/sessions.html", context)


@login_required
@require_POST
def sign_out_one(request: HttpRequest) -> HttpResponse:
    """Sign out of the session the form names, which must be one of the user's own."""
    chosen = request.POST.get("session", "")
    current = stored_id(request.session)
    if current is not None and chosen == public_id(current):
        logout(request)
        return redirect(resolve_url(settings.LOGOUT_REDIRECT_URL or "/"))
    stored = chosen
    if not app_settings.HASH_KEYS:
        own = [r.key for r in user_sessions(request.user) if public_id(r.key) == chosen]
        stored = own[0] if own else ""
    record = sign_out(request.user, stored) if stored else None
    if record is None:
        raise Http404("You have no such session.")
    device = (Device.of(record) or Device()).browser
    messages.success(
        request, gettext("Signed out of %(device)s.") % {"device": device}, fail_silently=True
    )
    return redirect("django_azure_sessions:sessions")


@login_required
@require_POST
def sign_out_others(request: HttpRequest) -> HttpResponse:
    count = sign_out_everywhere(request.user, keep=request.session)
    if count:
        text = ngettext(
            "Signed out of %(count)d other session.",
            "Signed out of %(count)d other sessions.",
            count,
        ) % {"count": count}
    else:
        text = gettext("You were signed in nowhere else.")
    messages.success(request, text, fail_silently=True)
    return redirect("django_azure_sessions:sessions")
