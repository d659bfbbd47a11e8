"""Routers that send every model to one database, for Django's own db session engine."""

from __future__ import annotations

from typing import Any


class _Everything:
    alias = "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.alias


class EverythingPostgres(_Everything):
    alias = "postgres"


class EverythingMariadb(_Everything):
    alias = "mariadb"
