"""``manage.py clearsessions``: Django's command, which also says what it removed.

List ``django_azure_sessions`` before ``django.contrib.sessions`` in ``INSTALLED_APPS`` for
this one to run (system check W001 says so). With ``-v 2`` it prints how many expired
sessions it removed and how long that took; at the default verbosity it prints nothing, like
Django's, so that cron mails nothing.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...core.session import StoreSession
from ...transfer import session_store


class Command(BaseCommand):
    help = "Removes expired sessions from the session store (SESSION_ENGINE, or --engine)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--engine",
            default=None,
            help="The session engine to clean, if not SESSION_ENGINE (e.g. after a move): "
            "sql, redis, table, or an engine's module path.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        engine = options["engine"] or settings.SESSION_ENGINE
        try:
            store = session_store(engine)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        what = "expired sessions"
        if _counts(store):
            storage = store.get_storage()
            removed: int | None = storage.clear_expired()
            what = storage.expired_items
        else:
            try:
                store.clear_expired()
            except NotImplementedError:
                raise CommandError(
                    f"Session engine {engine!r} doesn't support clearing expired sessions."
                ) from None
            removed = None
        if options["verbosity"] >= 2:
            count = what.capitalize() if removed is None else f"{removed} {what}"
            self.stdout.write(
                f"{count} removed from {engine} in {time.monotonic() - started:.2f} s."
            )


def _counts(store: type[Any]) -> bool:
    """Whether ``store`` is an engine of this package that does not clear in its own way."""
    return (
        issubclass(store, StoreSession)
        and store.clear_expired.__func__ is StoreSession.clear_expired.__func__  # type: ignore[attr-defined]
    )
