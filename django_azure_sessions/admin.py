"""Admin pages to browse, inspect and revoke the sessions of ``SESSION_ENGINE``.

They work the same on every engine of this package: they read and delete through the
engine's storage, never through its own tables or keys. The ``Session`` model (the SQL
engine's table) only gives them a place in the admin and their permissions: "view session"
to browse and inspect, "delete session" to revoke.

A session is shown by its stored id (the SHA-256 of its key), never by its key: nobody can
take a session over from these pages. With ``HASH_KEYS`` off the stored id *is* the key, so
the pages then refuse to list or show sessions. Values that would let a viewer act as the
user (the password hash marker, a session-kept CSRF secret) are not shown.

Each revoked session is written to the admin's history (``LogEntry``: who revoked which
stored id, of which user), like any deletion made in the admin.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import CSRF_SESSION_KEY
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from . import users
from .conf import app_settings
from .core import keys
from .core.session import USER_ID_KEY, StoreSession
from .core.storage import Record, Storage
from .models import Session
from .transfer import session_store

PAGE_SIZE = 100
HIDDEN_KEYS = frozenset({"_auth_user_hash", CSRF_SESSION_KEY})


def _store() -> type[StoreSession] | None:
    """The engine's session class, if these pages can serve it (see ``_unsupported``)."""
    store = session_store(settings.SESSION_ENGINE)
    if not issubclass(store, StoreSession) or not app_settings.HASH_KEYS:
        return None
    return store


def _unsupported() -> str:
    if not issubclass(session_store(settings.SESSION_ENGINE), StoreSession):
        return (
            "SESSION_ENGINE is not an engine of django-azure-sessions: these pages list the "
            "sessions of its engines only."
        )
    return (
        'AZURE_SESSIONS["HASH_KEYS"] is off: the stored ids are the session keys themselves, '
        "which would let anyone who can see these pages take a session over. They show "
        "nothing until it is on."
    )


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The sessions of ``SESSION_ENGINE``, whichever engine of this package it is."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        # Revoking takes a POST (the pages' forms, with their CSRF token), never a link.
        return [
            path("", view(self.list_view), name=f"{name}_changelist"),
            path(
                "revoke-user/",
                view(require_POST(self.revoke_user_view)),
                name=f"{name}_revoke_user",
            ),
            path("<str:key>/", view(self.detail_view), name=f"{name}_change"),
            path("<str:key>/revoke/", view(require_POST(self.revoke_view)), name=f"{name}_delete"),
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "engine": settings.SESSION_ENGINE,
            "can_revoke": self.has_delete_permission(request),
            **extra,
        }

    def _storage(self, request: HttpRequest, *, revoke: bool = False) -> Storage | None:
        allowed = (
            self.has_delete_permission(request) if revoke else self.has_view_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        store = _store()
        return None if store is None else store.get_storage()

    def list_view(self, request: HttpRequest) -> HttpResponse:
        storage = self._storage(request)
        user_id = request.GET.get("user", "").strip()
        cursor = request.GET.get("cursor") or None  # the engine's own, opaque here
        records: list[Record] = []
        next_cursor = None
        if storage is not None:
            if "\x00" in user_id:
                records = []  # no store keeps such an id (and PostgreSQL refuses it)
            elif user_id:
                records = sorted(storage.user_records(user_id), key=lambda r: r.key)
            else:
                try:
                    page = storage.page(cursor, limit=PAGE_SIZE)
                except ValueError:
                    raise Http404("No such page of sessions.") from None
                records, next_cursor = list(page.records), page.next_cursor
        context = self._context(
            request,
            "Sessions",
            unsupported=None if storage is not None else _unsupported(),
            revoke_user_label=f"Revoke all {len(records)} sessions of user {user_id}",
            records=records,
            user_id=user_id,
            cursor=cursor,
            next_cursor=next_cursor,
        )
        return TemplateResponse(request, "admin/django_azure_sessions/session_list.html", context)

    def _record(self, storage: Storage | None, key: str) -> Record:
        if storage is None or not keys.is_storage_id(key):
            raise Http404("No such session.")
        record = storage.load(key)
        if record is None:
            raise Http404("No such session: it expired or was revoked.")
        return record

    def detail_view(self, request: HttpRequest, key: str) -> HttpResponse:
        storage = self._storage(request)
        record = self._record(storage, key)
        store = _store()
        assert store is not None
        data = store().decode(record.data)
        shown = sorted((k, v) for k, v in data.items() if k not in HIDDEN_KEYS)
        now = datetime.datetime.now(datetime.timezone.utc)
        user_id = data.get(USER_ID_KEY, record.user_id)
        context = self._context(
            request,
            "Session",
            record=record,
            data=shown,
            size=len(record.data),
            expires_in=record.expires - now,
            user_id=user_id,
            revoke_user_label=f"Revoke every session of user {user_id}",
        )
        return TemplateResponse(
            request, "admin/django_azure_sessions/session_detail.html", context
        )

    def _changelist(self) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )

    def _log_revoked(
        self, request: HttpRequest, keys: list[str], user_id: str | None, how: str
    ) -> None:
        """Write the revocations to the admin's history, as the admin logs a deletion."""
        content_type = ContentType.objects.get_for_model(self.model)
        owner = "no user" if user_id is None else f"user {user_id}"
        admin_user = request.user
        assert admin_user.is_authenticated  # admin_view lets only staff in
        LogEntry.objects.bulk_create(
            LogEntry(
                user_id=admin_user.pk,
                content_type=content_type,
                object_id=key,
                object_repr=f"Session {key[:12]}… of {owner}"[:200],
                action_flag=DELETION,
                change_message=how,
            )
            for key in keys
        )

    def revoke_view(self, request: HttpRequest, key: str) -> HttpResponse:
        storage = self._storage(request, revoke=True)
        record = self._record(storage, key)
        assert storage is not None
        storage.delete(key)
        users.revoked_signal(storage, record.user_id, [key], "admin")
        self._log_revoked(request, [key], record.user_id, "Revoked.")
        messages.success(request, "The session was revoked: its user is signed out of it.")
        return HttpResponseRedirect(self._changelist())

    def revoke_user_view(self, request: HttpRequest) -> HttpResponse:
        storage = self._storage(request, revoke=True)
        user_id = request.POST.get("user", "")
        if storage is None or not user_id or "\x00" in user_id:
            raise Http404("No such user's sessions.")
        revoked = users.revoke(storage, user_id, reason="admin")
        self._log_revoked(request, revoked, user_id, "Revoked with every session of its user.")
        messages.success(
            request, f"{len(revoked)} sessions of user {user_id} revoked: signed out everywhere."
        )
        return HttpResponseRedirect(self._changelist())
