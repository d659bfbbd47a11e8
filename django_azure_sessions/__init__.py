"""Django session engines for Azure: Table Storage, Azure SQL and Azure Cache for Redis."""

from __future__ import annotations

from .exceptions import SessionStoreUnavailable

__all__ = ["SessionStoreUnavailable"]
__version__ = "0.1.0"
