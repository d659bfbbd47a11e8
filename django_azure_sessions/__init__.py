"""Django session engines for Azure: Table Storage, Azure SQL and Azure Cache for Redis."""

from __future__ import annotations

__version__ = "0.1.0"
