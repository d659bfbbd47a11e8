"""SQL engine: sessions in a table of any Django database (Azure SQL via mssql-django).

The hot path is hand-written SQL, one statement per load and one per save; everything
else (cleanup, listing) goes through the ORM.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from ..conf import app_settings
from ..core import keys
from ..core.session import StoreSession
from ..core.storage import Page, Record, Storage, utcnow
from ..models import Session

_COLUMNS = ("key", "data", "expires", "user_id", "version", "created", "updated")


def _to_django(value: datetime.datetime) -> datetime.datetime:
    """An aware UTC datetime as Django stores it under the current ``USE_TZ``."""
    if settings.USE_TZ:
        return value
    return timezone.make_naive(value, timezone.get_default_timezone())


class SQLStorage(Storage):
    """Records in ``django_azure_sessions`` on the database alias ``SQL["DATABASE"]``."""

    def __init__(self, alias: str, prefix: str, batch_size: int) -> None:
        self.alias = alias
        self.prefix = prefix
        self.batch_size = batch_size
        connection = connections[alias]
        table = connection.ops.quote_name(Session._meta.db_table)
        key, data, expires, user_id, version, created, updated = map(
            connection.ops.quote_name, _COLUMNS
        )
        self.vendor = connection.vendor
        self.sql_load = (
            f"SELECT {data}, {version}, {expires}, {user_id} FROM {table} "
            f"WHERE {key} = %s AND {expires} > %s"
        )
        self.sql_update = (
            f"UPDATE {table} SET {data} = %s, {expires} = %s, {user_id} = %s, "
            f"{version} = {version} + 1, {updated} = %s WHERE {key} = %s AND {version} = %s"
        )
        insert = (
            f"INTO {table} ({key}, {data}, {expires}, {user_id}, {version}, {created}, {updated})"
            " VALUES (%s, %s, %s, %s, 1, %s, %s)"
        )
        if self.vendor == "postgresql":
            self.sql_create: str | None = f"INSERT {insert} ON CONFLICT ({key}) DO NOTHING"
        elif self.vendor == "sqlite":  # ON CONFLICT needs SQLite 3.24; Django 4.2 allows 3.21
            self.sql_create = f"INSERT OR IGNORE {insert}"
        elif self.vendor == "mysql":
            self.sql_create = f"INSERT IGNORE {insert}"
        else:  # SQL Server, Oracle...: plain INSERT, a duplicate key is an IntegrityError
            self.sql_create = None
        self.sql_insert = f"INSERT {insert}"
        self.sql_delete = f"DELETE FROM {table} WHERE {key} = %s"

    @classmethod
    def from_settings(cls) -> SQLStorage:
        sql = app_settings.SQL
        return cls(sql.DATABASE, app_settings.KEY_PREFIX, sql.CLEAR_BATCH_SIZE)

    def _run(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        """Execute one statement; return its row when ``fetch``, else its row count."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if fetch else cursor.rowcount

    def _db_time(self, value: datetime.datetime) -> Any:
        if self.vendor == "postgresql" and settings.USE_TZ:
            return value  # psycopg sends aware datetimes as they are
        return connections[self.alias].ops.adapt_datetimefield_value(_to_django(value))

    def load(self, key: str) -> Record | None:
        row = self._run(self.sql_load, (self.prefix + key, self._db_time(utcnow())), fetch=True)
        if row is None:
            return None
        data, version, expires, user_id = row
        return Record(key, bytes(data), self._from_db(expires), user_id, version)

    def create(self, record: Record) -> int | None:
        when = self._db_time(record.updated or utcnow())
        params = (
            self.prefix + record.key,
            record.data,
            self._db_time(record.expires),
            record.user_id,
            when,
            when,
        )
        if self.sql_create is not None:
            return 1 if self._run(self.sql_create, params) == 1 else None
        try:
            with transaction.atomic(using=self.alias):
                self._run(self.sql_insert, params)
        except IntegrityError:
            return None
        return 1

    def update(self, record: Record, loaded: Record) -> int | None:
        params = (
            record.data,
            self._db_time(record.expires),
            record.user_id,
            self._db_time(record.updated or utcnow()),
            self.prefix + record.key,
            loaded.version,
        )
        return loaded.version + 1 if self._run(self.sql_update, params) == 1 else None

    def delete(self, key: str) -> None:
        self._run(self.sql_delete, (self.prefix + key,))

    def _queryset(self) -> Any:
        queryset = Session.objects.using(self.alias)
        return queryset.filter(key__startswith=self.prefix) if self.prefix else queryset

    def _from_db(self, value: Any) -> datetime.datetime:
        """A datetime read back from the database, as an aware UTC datetime."""
        if isinstance(value, str):  # SQLite through a raw cursor
            value = datetime.datetime.fromisoformat(value)
        if timezone.is_naive(value):  # in the zone Django wrote it in, as its ORM reads it
            zone = connections[self.alias].timezone or timezone.get_default_timezone()
            value = timezone.make_aware(value, zone)
        return value.astimezone(datetime.timezone.utc)  # type: ignore[no-any-return]

    def _record(self, row: Session) -> Record:
        return Record(
            key=row.key[len(self.prefix) :],
            data=bytes(row.data),
            expires=self._from_db(row.expires),
            user_id=row.user_id,
            version=row.version,
            created=self._from_db(row.created),
            updated=self._from_db(row.updated),
        )

    def _own(self, rows: Any) -> list[Record]:
        """The records among ``rows`` that are this site's: a shorter ``KEY_PREFIX`` of
        another site sharing the table matches its rows too."""
        return [
            self._record(row) for row in rows if keys.is_storage_id(row.key[len(self.prefix) :])
        ]

    def clear_expired(self) -> int:
        removed = 0
        while True:
            now = _to_django(utcnow())
            expired = self._queryset().filter(expires__lte=now)
            batch = list(expired.order_by().values_list("pk", flat=True)[: self.batch_size])
            if batch:
                removed += expired.filter(pk__in=batch).delete()[0]
            if len(batch) < self.batch_size:
                return removed

    def user_records(self, user_id: str) -> list[Record]:
        live = self._queryset().filter(user_id=user_id, expires__gt=_to_django(utcnow()))
        return self._own(live.order_by("key"))

    def page(self, cursor: str | None = None, limit: int = 100) -> Page:
        live = self._queryset().filter(expires__gt=_to_django(utcnow())).order_by("key")
        if cursor is not None:
            live = live.filter(key__gt=self.prefix + cursor)
        rows = list(live[:limit])
        records = self._own(rows)
        return Page(records, rows[-1].key[len(self.prefix) :] if len(rows) == limit else None)


class SessionStore(StoreSession):
    """Sessions in a Django database table (see ``AZURE_SESSIONS["SQL"]``)."""

    storage_class = SQLStorage
