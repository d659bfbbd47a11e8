"""SQL engine: sessions in a table of any Django database (Azure SQL via mssql-django).

The hot path is hand-written SQL through ``connection.cursor()``, one statement per load, per
save and per touch (an UPDATE of the expiry and the last activity alone, conditional on the
version, which it leaves as it is). Cleanup is one statement per bounded batch, in each
vendor's SQL (the ORM on vendors it does not know). Listing picks keys with the ORM and reads
the rows with the same columns as a load, so a damaged row is skipped the same way.

Each statement on PostgreSQL and MySQL/MariaDB is watched: past ``AZURE_SESSIONS["TIMEOUT"]``
one watchdog thread shuts the connection's socket down (``fileno()`` is public on psycopg
and mysqlclient), so the blocked call fails at once, whatever the network does. The
connection is then closed and Django opens a new one on the next use. See docs/sql.md.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.utils import timezone

from ..conf import app_settings
from ..core import keys
from ..core.session import StoreSession
from ..core.storage import DamagedRecord, Page, Record, Storage, Sweep, key_cursor, utcnow
from ..models import Session

logger = logging.getLogger("django_azure_sessions")

_COLUMNS = ("key", "data", "expires", "user_id", "version", "created", "updated", "device")
#: Vendors whose connections have a socket that the watchdog can shut down.
_WATCHED_VENDORS = frozenset({"postgresql", "mysql"})
#: MySQL client errors that mean the connection is gone (CR_CONNECTION_ERROR,
#: CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED).
_MYSQL_LOST = frozenset({2002, 2003, 2006, 2013, 2055})
_IN_BATCH = 500  # keys per "IN (...)": under every vendor's limit on parameters
_UNREAD = object()  # in place of the columns of a row that could not be read
_POLL = 0.1  # seconds between the watchdog's looks at the statements in flight
_LINGER = 2.0  # seconds the watchdog keeps looking after the last statement, then sleeps


def _to_django(value: datetime.datetime) -> datetime.datetime:
    """An aware UTC datetime as Django stores it under the current ``USE_TZ``."""
    if settings.USE_TZ:
        return value
    return timezone.make_naive(value, timezone.get_default_timezone())


class _Watch:
    __slots__ = ("deadline", "fd", "fired")

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self.fired = False


class _Watchdog:
    """One thread per process that cuts the connection of a statement past its deadline.

    Watching costs a lock and a dict entry per statement; the thread sleeps while nothing is
    watched. The cut happens under the lock, so a statement that has finished and released
    its watch is never cut.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, _Watch] = {}
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, budget: float) -> _Watch:
        """Watch the statement about to run on socket ``fd`` (taken by the thread that owns
        the connection: mysqlclient refuses ``fileno()`` from another thread mid-query)."""
        watch = _Watch(fd, time.monotonic() + budget)
        with self._lock:
            self._watched[id(watch)] = watch
        if not self._busy.is_set():
            self._wake()
        return watch

    def release(self, watch: _Watch) -> None:
        with self._lock:
            self._watched.pop(id(watch), None)

    def _wake(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="django_azure_sessions sql watchdog", daemon=True
                )
                self._thread.start()
        self._busy.set()

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while True:
            self._busy.wait()
            with self._lock:
                now = time.monotonic()
                for watch in [w for w in self._watched.values() if w.deadline <= now]:
                    del self._watched[id(watch)]
                    watch.fired = True
                    _cut(watch.fd)
                if self._watched:
                    idle_since = now
                    pause = min(w.deadline for w in self._watched.values()) - now
                elif now - idle_since > _LINGER:
                    self._busy.clear()
                    continue
                else:
                    pause = _POLL
            # Polling (rather than waking per statement) keeps a statement's cost to a dict
            # entry; a shorter TIMEOUT set meanwhile may bring a deadline forward.
            time.sleep(min(max(pause, 0.001), _POLL))


def _cut(fd: int) -> None:
    """Shut the socket ``fd`` down, so that the call blocked on it fails now."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:  # closed meanwhile: nothing to cut
        logger.debug("The watchdog could not cut a connection: %s", exc)


_watchdog = _Watchdog()


class SQLStorage(Storage):
    """Records in ``django_azure_sessions`` on the database alias ``SQL["DATABASE"]``."""

    engine = "sql"
    settings = frozenset({"AZURE_SESSIONS", "DATABASES"})

    def __init__(self, alias: str, prefix: str, batch_size: int, timeout: float = 5.0) -> None:
        self.alias = alias
        self.prefix = prefix
        self.batch_size = batch_size
        self.timeout = timeout
        connection = connections[alias]
        self.table = connection.ops.quote_name(Session._meta.db_table)
        key, data, expires, user_id, version, created, updated, device = map(
            connection.ops.quote_name, _COLUMNS
        )
        self.vendor = connection.vendor
        self.watched = self.vendor in _WATCHED_VENDORS
        columns = f"{data}, {version}, {expires}, {user_id}, {created}, {updated}, {device}"
        self.sql_load = f"SELECT {columns} FROM {self.table} WHERE {key} = %s AND {expires} > %s"
        self.sql_rows = f"SELECT {key}, {columns} FROM {self.table} WHERE {key} IN "
        self.sql_update = (
            f"UPDATE {self.table} SET {data} = %s, {expires} = %s, {user_id} = %s, "
            f"{version} = {version} + 1, {updated} = %s, {device} = %s "
            f"WHERE {key} = %s AND {version} = %s"
        )
        # The version stays: a save after a touch names the version it loaded, and wins.
        self.sql_touch = (
            f"UPDATE {self.table} SET {expires} = %s, {updated} = %s "
            f"WHERE {key} = %s AND {version} = %s"
        )
        insert = (
            f"INTO {self.table} ({key}, {data}, {expires}, {user_id}, {version}, {created}, "
            f"{updated}, {device}) VALUES (%s, %s, %s, %s, 1, %s, %s, %s)"
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
        self.sql_delete = f"DELETE FROM {self.table} WHERE {key} = %s"

    @classmethod
    def from_settings(cls) -> SQLStorage:
        sql = app_settings.SQL
        return cls(
            sql.DATABASE, app_settings.KEY_PREFIX, sql.CLEAR_BATCH_SIZE, app_settings.TIMEOUT
        )

    def queryset(self) -> Any:
        sessions = Session.objects.using(self.alias)
        return sessions.filter(key__startswith=self.prefix) if self.prefix else sessions.all()

    def describe(self) -> str:
        db = connections[self.alias].settings_dict
        if self.vendor == "sqlite":
            return f"database {self.alias!r}, sqlite {db.get('NAME')}"
        where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT')}" if db.get("PORT") else ""
        return f"database {self.alias!r}, {self.vendor} {where or db.get('HOST') or ''}".rstrip()

    def _run(
        self, operation: str, sql: str, params: Sequence[Any], fetch: str | None = None
    ) -> Any:
        """Execute one statement within the budget; return its row (``fetch="one"``), its
        rows (``"all"``) or its row count. A lost or stalled connection is unavailability;
        the database's own errors (a constraint, a lock timeout) propagate."""
        connection = connections[self.alias]
        watch = None
        try:
            with connection.cursor() as cursor:
                if self.watched:
                    watch = _watchdog.watch(connection.connection.fileno(), self.timeout)
                if fetch is None:
                    cursor.execute(sql, params)
                    return cursor.rowcount
                # SQLite's converters run as rows are read: on Python 3.10, whose sqlite3
                # reads the first row within execute(), already there.
                try:
                    cursor.execute(sql, params)
                    return cursor.fetchone() if fetch == "one" else cursor.fetchall()
                except (ValueError, TypeError, OverflowError) as exc:
                    raise DamagedRecord(f"{type(exc).__name__}: {exc}") from exc
        except (OperationalError, InterfaceError) as error:
            cut = watch is not None and watch.fired
            if not (cut or self._lost(connection, error)):
                raise
            self._close(connection)
            reason = f"no answer within {self.timeout:g} s" if cut else error
            raise self.unavailable(operation, reason) from error
        finally:
            if watch is not None:
                _watchdog.release(watch)
                if watch.fired:  # cut just as it finished: the socket is gone
                    self._close(connection)

    def _lost(self, connection: Any, error: Exception) -> bool:
        """Whether ``error`` left no usable connection (vs. an error the server answered)."""
        raw = connection.connection
        if raw is None:  # connecting failed
            return True
        if self.vendor == "postgresql":
            return bool(raw.closed or getattr(raw, "broken", False))
        if self.vendor == "mysql":
            return bool(error.args) and error.args[0] in _MYSQL_LOST
        return not connection.is_usable()

    @staticmethod
    def _close(connection: Any) -> None:
        """Drop a dead connection, so that the next use opens a new one."""
        with contextlib.suppress(DatabaseError):
            connection.close()

    def _db_time(self, value: datetime.datetime) -> Any:
        if self.vendor == "postgresql" and settings.USE_TZ:
            return value  # psycopg sends aware datetimes as they are
        return connections[self.alias].ops.adapt_datetimefield_value(_to_django(value))

    def load(self, key: str) -> Record | None:
        try:
            row = self._run(
                "load", self.sql_load, (self.prefix + key, self._db_time(utcnow())), fetch="one"
            )
            if row is None:
                return None
            return self._record(key, *row)
        except DamagedRecord as exc:
            self.damaged(key, str(exc))
            return None

    def create(self, record: Record) -> int | None:
        updated = record.updated or utcnow()
        params = (
            self.prefix + record.key,
            record.data,
            self._db_time(record.expires),
            record.user_id,
            self._db_time(record.created or updated),
            self._db_time(updated),
            record.device,
        )
        if self.sql_create is not None:
            return 1 if self._run("create", self.sql_create, params) == 1 else None
        try:
            with transaction.atomic(using=self.alias):
                self._run("create", self.sql_insert, params)
        except IntegrityError:
            return None
        return 1

    def update(self, record: Record, loaded: Record) -> int | None:
        params = (
            record.data,
            self._db_time(record.expires),
            record.user_id,
            self._db_time(record.updated or utcnow()),
            record.device,
            self.prefix + record.key,
            loaded.version,
        )
        return loaded.version + 1 if self._run("update", self.sql_update, params) == 1 else None

    def touch(self, record: Record, loaded: Record) -> int | None:
        params = (
            self._db_time(record.expires),
            self._db_time(record.updated or utcnow()),
            self.prefix + record.key,
            loaded.version,
        )
        return loaded.version if self._run("touch", self.sql_touch, params) == 1 else None

    def delete(self, key: str) -> None:
        self._run("delete", self.sql_delete, (self.prefix + key,))

    def _from_db(self, *values: Any) -> list[datetime.datetime]:
        """Datetimes read back from the database, as aware UTC datetimes."""
        zone = None  # looked up once a row: ``connections[alias]`` costs microseconds
        aware: list[datetime.datetime] = []
        try:
            for value in values:
                if isinstance(value, str):  # SQLite through a raw cursor
                    value = datetime.datetime.fromisoformat(value)
                if not isinstance(value, datetime.datetime):
                    raise TypeError(f"a {type(value).__name__}, not a datetime")
                if timezone.is_naive(value):  # in the zone Django wrote it in, as its ORM does
                    if zone is None:
                        connection = connections[self.alias]
                        zone = connection.timezone or timezone.get_default_timezone()
                    value = timezone.make_aware(value, zone)
                aware.append(value.astimezone(datetime.timezone.utc))
        except (ValueError, TypeError, OverflowError) as exc:
            raise DamagedRecord(f"unreadable date: {exc}") from exc
        return aware

    def _record(
        self,
        key: str,
        data: Any,
        version: Any,
        expires: Any,
        user_id: Any,
        created: Any,
        updated: Any,
        device: Any,
    ) -> Record:
        """The record of one row's columns (``sql_load``'s); raises ``DamagedRecord`` on a
        column that is not what this engine writes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DamagedRecord(f"data is a {type(data).__name__}, not bytes")
        if not isinstance(version, int) or isinstance(version, bool):
            raise DamagedRecord(f"version is a {type(version).__name__}, not an integer")
        if user_id is not None and not isinstance(user_id, str):
            raise DamagedRecord(f"user id is a {type(user_id).__name__}, not a string")
        if device is not None and not isinstance(device, str):
            raise DamagedRecord(f"device is a {type(device).__name__}, not a string")
        expires, created, updated = self._from_db(expires, created, updated)
        return Record(key, bytes(data), expires, user_id, version, created, updated, device)

    def _rows(self, stored: Sequence[str]) -> list[Any]:
        """The columns of the rows whose stored keys are ``stored``, in one statement per
        batch; row by row when a value breaks the driver's conversion of the batch."""
        rows: list[Any] = []
        for start in range(0, len(stored), _IN_BATCH):
            batch = stored[start : start + _IN_BATCH]
            sql = self.sql_rows + f"({', '.join(['%s'] * len(batch))})"
            try:
                rows.extend(self._run("list", sql, batch, fetch="all"))
            except DamagedRecord:
                for one in batch:
                    try:
                        rows.extend(self._run("list", self.sql_rows + "(%s)", [one], fetch="all"))
                    except DamagedRecord as exc:
                        self.damaged(one[len(self.prefix) :], str(exc))
                        rows.append((one, _UNREAD, *[None] * (len(_COLUMNS) - 2)))
        return rows

    def _read(self, stored: Iterable[str]) -> tuple[list[Record], int]:
        """The live records of this site among the stored keys, and how many were damaged."""
        own = [s for s in stored if keys.is_storage_id(s[len(self.prefix) :])]
        found = {row[0]: row for row in self._rows(own)}
        now = utcnow()
        records: list[Record] = []
        damaged = 0
        for stored_key in own:
            row = found.get(stored_key)
            if row is None:
                continue  # deleted meanwhile
            key = stored_key[len(self.prefix) :]
            try:
                record = self._record(key, *row[1:])
            except DamagedRecord as exc:
                if row[1] is not _UNREAD:  # else logged by _rows()
                    self.damaged(key, str(exc))
                damaged += 1
                continue
            if record.expires > now:
                records.append(record)
        return records, damaged

    def _expired_sql(self) -> tuple[str, str, list[Any]]:
        """The ``WHERE`` of expired rows (``%s`` for the time, then the prefix's), the
        statement that removes one batch of them, and the parameters after the time."""
        connection: Any = connections[self.alias]  # ``operators``: every backend's, unstubbed
        key, expires = map(connection.ops.quote_name, ("key", "expires"))
        where = f"{expires} <= %s"
        extra: list[Any] = []
        if self.prefix:  # as Django's own ``startswith`` lookup escapes and compares
            where += f" AND {key} {connection.operators['startswith'] % '%s'}"
            extra.append(connection.ops.prep_for_like_query(self.prefix) + "%")
        n = int(self.batch_size)
        if self.vendor == "postgresql":
            # The oldest rows through the expires index, from where the last batch ended
            # (the entries of rows removed stay in the index until VACUUM: each batch would
            # walk them all again), then removed by their address (a TID scan, no second
            # look-up by key). The outer condition is checked again on a row that a
            # concurrent save changed, so a session just extended stays.
            oldest = (
                f"SELECT ctid FROM {self.table} WHERE {where} AND {expires} >= %s "
                f"ORDER BY {expires} LIMIT {n}"
            )
            sql = (
                f"WITH removed AS (DELETE FROM {self.table} WHERE ctid = ANY(ARRAY({oldest})) "
                f"AND {where} RETURNING {expires}) SELECT COUNT(*), MAX({expires}) FROM removed"
            )
        elif self.vendor == "mysql":  # DELETE takes ORDER BY and LIMIT; IN (...) takes no LIMIT
            sql = f"DELETE FROM {self.table} WHERE {where} ORDER BY {expires} LIMIT {n}"
        elif self.vendor == "microsoft":
            # mssql-django. Not run by the test suite (no SQL Server here): T-SQL that every
            # SQL Server and Azure SQL version takes.
            sql = f"DELETE TOP ({n}) FROM {self.table} WHERE {where}"
        elif self.vendor == "sqlite":  # one writer at a time: no concurrent save to mind
            sql = (
                f"DELETE FROM {self.table} WHERE {key} IN (SELECT {key} FROM {self.table} "
                f"WHERE {where} ORDER BY {expires} LIMIT {n})"
            )
        else:
            sql = ""  # the ORM chooses, then removes, each batch
        return where, sql, extra

    def clear_expired(self, sweep: Sweep | None = None) -> int:
        sweep = sweep or Sweep()
        where, sql, extra = self._expired_sql()
        if self.vendor == "postgresql":
            walk = self._walk(where, extra)
            if walk is not None:
                return self._clear_by_pages(where, extra, *walk, sweep)
        removed = 0
        since = self._db_time(datetime.datetime(1, 1, 2, tzinfo=datetime.timezone.utc))
        while not sweep.stopped():
            now = self._db_time(utcnow())
            if not sql:
                count = self._clear_batch_orm()
            elif self.vendor == "postgresql":
                count, last = self._run(
                    "clear expired", sql, [now, *extra, since, now, *extra], fetch="one"
                )
                since = last if last is not None else since
            else:
                count = self._run("clear expired", sql, [now, *extra])
            removed += count
            sweep.removed(count)
            if count < self.batch_size:
                break
        return removed

    def _walk(self, where: str, extra: list[Any]) -> tuple[int, int] | None:
        """On PostgreSQL 14 or later, when the planner expects a quarter of the table or more
        to have expired: (the table's pages, pages per statement) for a walk through the
        table in its physical order. Through the index each removed row costs a look-up in
        a page of its own; in page order, rows that expired together share their pages, as
        they do in Django's single ``DELETE``, at about a third of the cost."""
        version, tuples, pages, size = self._run(
            "clear expired",
            "SELECT current_setting('server_version_num')::int, reltuples, relpages, "
            "pg_relation_size(oid) / current_setting('block_size')::int FROM pg_class "
            "WHERE oid = %s::regclass",
            [self.table],
            fetch="one",
        )
        if version < 140000:
            return None  # no TID range scan: each statement would read the whole table
        if tuples <= 0 or pages <= 0:  # never analysed: no estimate to go by
            return None
        (plan,) = self._run(
            "clear expired",
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.table} WHERE {where}",
            [self._db_time(utcnow()), *extra],
            fetch="one",
        )
        if plan[0]["Plan"]["Plan Rows"] < tuples / 4:
            return None
        return int(size), max(1, int(self.batch_size * pages / tuples))

    def _clear_by_pages(
        self, where: str, extra: list[Any], pages: int, step: int, sweep: Sweep
    ) -> int:
        """Expired rows removed ``step`` pages at a time, each statement bounded by its pages
        (a TID range scan). Pages added meanwhile hold rows written since: not expired."""
        sql = f"DELETE FROM {self.table} WHERE ctid >= %s::tid AND ctid < %s::tid AND {where}"
        removed = 0
        for start in range(0, pages, step):
            if sweep.stopped():
                break
            now = self._db_time(utcnow())
            params = [f"({start},0)", f"({start + step},0)", now, *extra]
            count = self._run("clear expired", sql, params)
            removed += count
            sweep.removed(count)
        return removed

    def _clear_batch_orm(self) -> int:
        expired = self.queryset().filter(expires__lte=_to_django(utcnow()))
        batch = list(expired.order_by("expires").values_list("pk", flat=True)[: self.batch_size])
        if not batch:
            return 0
        # Checked again as it is removed: a session extended meanwhile stays.
        return int(expired.filter(pk__in=batch).delete()[0])

    def count_expired(self) -> int:
        where, _, extra = self._expired_sql()
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {where}"
        return int(self._run("count expired", sql, [self._db_time(utcnow()), *extra], "one")[0])

    def user_records(self, user_id: str) -> list[Record]:
        live = self.queryset().filter(user_id=user_id, expires__gt=_to_django(utcnow()))
        return self._read(live.order_by("key").values_list("key", flat=True))[0]

    def page(self, cursor: str | None = None, limit: int = 100) -> Page:
        cursor = key_cursor(cursor)
        live = self.queryset().filter(expires__gt=_to_django(utcnow())).order_by("key")
        if cursor is not None:
            live = live.filter(key__gt=self.prefix + cursor)
        stored = list(live.values_list("key", flat=True)[:limit])
        records, damaged = self._read(stored)
        last = stored[-1][len(self.prefix) :] if len(stored) == limit else None
        return Page(records, last, damaged)


class SessionStore(StoreSession):
    """Sessions in a Django database table (see ``AZURE_SESSIONS["SQL"]``)."""

    storage_class = SQLStorage
