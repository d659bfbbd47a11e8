"""Signals of django-azure-sessions.

``session_revoked`` is sent after sessions were ended early, by every path that does so:

- ``sender``: the storage class of the engine;
- ``user_id``: the id the sessions were signed in as (a string), or None;
- ``stored_ids``: the stored ids (never the keys) of the sessions ended;
- ``reason``, one of:

  - ``"admin"``: revoked in the admin;
  - ``"sign_out_everywhere"``: by ``users.sign_out_everywhere()`` (the "sign out of all other
    sessions" button included);
  - ``"sign_out"``: one session, by ``users.sign_out()`` (a "Sign out" button of the "Where
    you are signed in" page included);
  - ``"cap"``: a sign-in went past ``AZURE_SESSIONS["MAX_SESSIONS_PER_USER"]``, and these
    were the user's least recently active sessions;
  - ``"idle"``: a request came after ``IDLE_TIMEOUT`` without activity;
  - ``"absolute"``: a request came after ``ABSOLUTE_TIMEOUT`` since sign-in.

  ``"idle"`` and ``"absolute"`` are sent when a request finds the session over (it is then
  deleted), so they may come long after the timeout, or never for a session nobody uses again.

For example, to tell the user by e-mail::

    from django.dispatch import receiver
    from django_azure_sessions.signals import session_revoked

    @receiver(session_revoked)
    def tell_the_user(sender, user_id, stored_ids, reason, **kwargs):
        if user_id is not None and reason in {"admin", "cap"}:
            user = User.objects.get(pk=user_id)
            user.email_user(
                "You were signed out",
                f"{len(stored_ids)} of your sessions ended ({reason}). If that was not you, "
                "change your password.",
            )
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.dispatch import Signal

session_revoked = Signal()


def _arguments(
    storage: Any, user_id: str | None, stored_ids: list[str], reason: str
) -> dict[str, Any]:
    return {
        "sender": type(storage),
        "user_id": user_id,
        "stored_ids": stored_ids,
        "reason": reason,
    }


def send_revoked(storage: Any, user_id: str | None, stored_ids: list[str], reason: str) -> None:
    """Send ``session_revoked`` for the sessions ``storage`` ended (nothing if there are none)."""
    if stored_ids:
        session_revoked.send(**_arguments(storage, user_id, stored_ids, reason))


async def asend_revoked(
    storage: Any, user_id: str | None, stored_ids: list[str], reason: str
) -> None:
    """``send_revoked()`` from async code: async receivers are awaited, sync ones run in a
    thread (Django >= 5.0's ``asend()``; before it, the whole ``send()`` runs in a thread)."""
    if not stored_ids:
        return
    if hasattr(session_revoked, "asend"):
        await session_revoked.asend(**_arguments(storage, user_id, stored_ids, reason))
    else:
        await sync_to_async(send_revoked)(storage, user_id, stored_ids, reason)
