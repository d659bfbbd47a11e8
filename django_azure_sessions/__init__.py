"""Django session engines for Azure: Table Storage, Azure SQL and Azure Cache for Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import SessionStoreUnavailable

if TYPE_CHECKING:
    from .core.storage import Storage

__all__ = ["SessionStoreUnavailable", "warm_up"]
__version__ = "0.1.0"


def warm_up(*, connect: bool = True) -> Storage | None:
    """Build the session store's client and open its first connection (see ``warm.py``):
    ``post_worker_init = lambda worker: django_azure_sessions.warm_up()`` in gunicorn."""
    from .warm import warm_up

    return warm_up(connect=connect)
