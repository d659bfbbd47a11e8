"""A user's sessions, for "where am I signed in" pages and "sign out everywhere" buttons.

Both work on ``SESSION_ENGINE`` when it is an engine of this package, through the per-user
index every engine keeps::

    from django_azure_sessions.users import sign_out_everywhere

    def change_password_done(request):
        sign_out_everywhere(request.user, keep=request.session)  # other devices, not this one

``sign_out()`` ends one of the user's sessions, by its stored id (``Record.key``).
``auser_sessions()``, ``asign_out_everywhere()`` and ``asign_out()`` are the same for async
views.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase

from .conf import app_settings
from .core import keys
from .core.session import StoreSession
from .core.storage import Record, Storage
from .signals import asend_revoked, send_revoked
from .transfer import our_store


def _storage() -> Storage:
    purpose = "A user's sessions are indexed"
    return our_store(settings.SESSION_ENGINE, purpose).get_storage()


def user_id(user: Any) -> str:
    """The id a session keeps for ``user``, as ``django.contrib.auth.login()`` writes it."""
    return user._meta.pk.value_to_string(user)  # type: ignore[no-any-return]


def stored_id(session: SessionBase) -> str | None:
    """The id under which ``session`` is stored, or None if it has no key yet."""
    key = session.session_key
    return None if key is None else keys.storage_id(key)


def user_sessions(user: Any) -> list[Record]:
    """The live sessions signed in as ``user``, in stored-id order."""
    return sorted(_storage().user_records(user_id(user)), key=lambda record: record.key)


def sign_out_everywhere(user: Any, *, keep: SessionBase | None = None) -> int:
    """Delete every session of ``user`` but ``keep``; return how many were deleted."""
    kept = None if keep is None else stored_id(keep)
    return len(revoke(_storage(), user_id(user), keep=kept, reason="sign_out_everywhere"))


def sign_out(user: Any, stored: str) -> Record | None:
    """Delete the session of ``user`` stored as ``stored``, and return it; None (nothing
    deleted) when ``user`` has no live session stored so."""
    storage = _storage()
    owner = user_id(user)
    record = _own(storage.user_records(owner), stored)
    if record is not None:
        storage.delete(record.key)
        send_revoked(storage, owner, [record.key], "sign_out")
    return record


def _own(records: list[Record], stored: str) -> Record | None:
    return next((record for record in records if record.key == stored), None)


def revoke(storage: Storage, owner: str, *, keep: str | None = None, reason: str) -> list[str]:
    """Delete the sessions of the user whose id is ``owner`` but the one stored as ``keep``;
    return the stored ids of those deleted (``session_revoked`` is sent with ``reason``)."""
    revoked = [r.key for r in storage.user_records(owner) if r.key != keep]
    for key in revoked:
        storage.delete(key)
    send_revoked(storage, owner, revoked, reason)
    return revoked


async def auser_sessions(user: Any) -> list[Record]:
    records = await _storage().auser_records(user_id(user))
    return sorted(records, key=lambda record: record.key)


async def asign_out_everywhere(user: Any, *, keep: SessionBase | None = None) -> int:
    storage = _storage()
    kept = None if keep is None else stored_id(keep)
    owner = user_id(user)
    revoked = [r.key for r in await storage.auser_records(owner) if r.key != kept]
    for key in revoked:
        await storage.adelete(key)
    await asend_revoked(storage, owner, revoked, "sign_out_everywhere")
    return len(revoked)


async def asign_out(user: Any, stored: str) -> Record | None:
    storage = _storage()
    owner = user_id(user)
    record = _own(await storage.auser_records(owner), stored)
    if record is not None:
        await storage.adelete(record.key)
        await asend_revoked(storage, owner, [record.key], "sign_out")
    return record


def limit_sessions(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: with ``AZURE_SESSIONS["MAX_SESSIONS_PER_USER"]`` set,
    revoke the user's least recently active sessions beyond it, through the per-user index.

    The session signing in is never among them: it counts as the newest, so two sign-ins at
    once each keep their own (the cap may then be exceeded by one until the next sign-in).
    """
    cap = app_settings.MAX_SESSIONS_PER_USER
    session = getattr(request, "session", None)
    if cap is None or user is None or not isinstance(session, StoreSession):
        return
    storage = session.get_storage()
    owner = user_id(user)
    current = stored_id(session)
    others = [r for r in storage.user_records(owner) if r.key != current]
    others.sort(key=_last_active, reverse=True)
    revoked = [record.key for record in others[cap - 1 :]]
    for key in revoked:
        storage.delete(key)
    send_revoked(storage, owner, revoked, "cap")


def _last_active(record: Record) -> datetime.datetime:
    return record.updated or record.created or record.expires
