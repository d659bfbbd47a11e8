"""Warm workers: build the session store's client when Django starts, not on a first request.

A worker's first request would otherwise import the store's driver and build its client (for
Redis, 60-95 ms against a steady half millisecond). ``AppConfig.ready()`` calls
``warm_up(connect=False)`` when ``AZURE_SESSIONS["WARM_UP"]`` is on (the default) and the
``SESSION_ENGINE`` is one of this package's: that builds the client and its pool but opens no
connection, so management commands that do not use sessions never reach the store. A server
hook may call ``warm_up()`` after the fork to open the first connection as well.
"""

from __future__ import annotations

import contextlib
from importlib import import_module

from django.conf import settings

from .core.session import StoreSession
from .core.storage import Storage
from .exceptions import SessionStoreUnavailable


def session_store() -> type[StoreSession] | None:
    """The ``SessionStore`` of ``SESSION_ENGINE`` if the engine is one of this package's."""
    engine = str(getattr(settings, "SESSION_ENGINE", ""))
    if not engine.startswith("django_azure_sessions.backends."):
        return None
    store = getattr(import_module(engine), "SessionStore", None)
    return store if isinstance(store, type) and issubclass(store, StoreSession) else None


def warm_up(*, connect: bool = True) -> Storage | None:
    """Build the session store's client now and, with ``connect`` (the default), open its
    first connection: the line for a server's worker start-up hook, such as gunicorn's
    ``post_worker_init``. Returns the storage, or None when the engine is not this package's.

    A store that does not answer is logged, not raised: the worker starts, and its first
    request connects (or answers 503) as it would have.
    """
    store = session_store()
    if store is None:
        return None
    storage = store.get_storage()
    with contextlib.suppress(SessionStoreUnavailable):  # Storage.unavailable() logged it
        storage.warm_up(connect=connect)
    return storage
