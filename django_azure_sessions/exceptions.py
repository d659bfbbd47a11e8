"""The errors this package raises where a caller may want to handle them."""

from __future__ import annotations


class SessionStoreUnavailable(Exception):
    """The session store did not answer within ``AZURE_SESSIONS["TIMEOUT"]``, or refused to.

    It names the engine and where its store is (a host, a table, a database alias), never a
    secret. With ``django_azure_sessions.middleware.SessionMiddleware`` the user gets a 503
    with ``Retry-After`` instead of a 500; with ``ON_UNAVAILABLE = "degrade"`` the request
    goes on with an empty session that writes nothing.
    """

    def __init__(self, engine: str, store: str, reason: str) -> None:
        self.engine = engine
        self.store = store
        self.reason = reason
        super().__init__(f"The {engine} session store ({store}) is unavailable: {reason}")
