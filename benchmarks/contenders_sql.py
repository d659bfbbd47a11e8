"""SQL suite: this package's SQL engine, Django's db engine, and raw psycopg as the floor.

All on the same PostgreSQL database (the test database ``das_benchmarks``). Beside the
floor, two contenders bound what an engine can reach: the floor's statements with the
payload decoded and encoded by this package's codec, and the same statements and codec
through Django's ``connection.cursor()`` (what an engine on Django's connections pays).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore

from django_azure_sessions.backends.sql import SessionStore as SQLStore
from django_azure_sessions.core import codec, keys

from .harness import PAYLOAD, Contender, Target

NEEDS_DATABASE = True
BASELINE = "django-azure-sessions sql"
TARGETS = [
    Target("cycle", BASELINE, "django db", 2.0),
    Target("create", BASELINE, "django db", 3.0),
    Target("cycle", BASELINE, "raw psycopg", 1 / 1.5),
]


class SessionStoreContender(Contender):
    """Any Django ``SessionStore`` class, used the way SessionMiddleware uses it."""

    def __init__(self, name: str, store: type[SessionBase]) -> None:
        self.name = name
        self.store = store

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def read(self, handle: Any) -> None:
        assert self.store(handle)["cart"]

    def cycle(self, handle: Any, counter: int) -> None:
        session = self.store(handle)
        session["counter"] = counter
        session.save()

    def create(self) -> Any:
        session = self.store()
        session.update(PAYLOAD)
        session.save()
        return session.session_key


class RawPsycopg(Contender):
    """The floor: the same table layout, one SELECT and one UPDATE of an encoded payload.

    The table is a copy of the engine's (same columns, same indexes), so the floor does the
    same work in PostgreSQL and the gap is what the engine adds in Python: Django's
    connection handling, the session object, encoding and signing.
    """

    name = "raw psycopg"
    table = "raw_sessions"
    SELECT = "SELECT data, version, expires, user_id FROM {} WHERE key = %s AND expires > %s"
    UPDATE = (
        "UPDATE {} SET data = %s, expires = %s, user_id = %s,"
        " version = version + 1, updated = %s WHERE key = %s AND version = %s"
    )
    INSERT = (
        "INSERT INTO {} (key, data, expires, user_id, version, created, updated)"
        " VALUES (%s, %s, %s, %s, 1, %s, %s)"
    )

    def __init__(self) -> None:
        self.SELECT, self.UPDATE, self.INSERT = (
            sql.format(self.table) for sql in (self.SELECT, self.UPDATE, self.INSERT)
        )

    def setup(self) -> None:
        import psycopg

        db = settings.DATABASES["default"]
        self.connection = psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            password=db["PASSWORD"],
            dbname=db["NAME"],
            options=db["OPTIONS"]["options"],
            autocommit=True,
        )
        self.connection.execute(
            f"CREATE TABLE {self.table} (LIKE django_azure_sessions INCLUDING ALL)"
        )
        self.payload = codec.encode(PAYLOAD, "benchmark", codec_serializer())

    def teardown(self) -> None:
        self.connection.execute(f"DROP TABLE {self.table}")
        self.connection.close()

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def _execute(self, sql: str, params: Any) -> Any:
        """Run one prepared statement; a ``SELECT``'s row."""
        cursor = self.connection.execute(sql, params, prepare=True)
        return cursor.fetchone() if sql.startswith("SELECT") else None

    def _select(self, handle: Any) -> Any:
        row = self._execute(self.SELECT, (handle, _now()))
        assert row is not None
        return row

    def _update(self, handle: Any, row: Any, payload: bytes) -> None:
        now = _now()
        self._execute(self.UPDATE, (payload, now + LIFETIME, row[3], now, handle, row[1]))

    def read(self, handle: Any) -> None:
        self._select(handle)

    def cycle(self, handle: Any, counter: int) -> None:
        self._update(handle, self._select(handle), self.payload)

    def create(self) -> Any:
        key = keys.new_key()
        now = _now()
        self._execute(self.INSERT, (key, self.payload, now + LIFETIME, "1042", now, now))
        return key


class RawPsycopgCodec(RawPsycopg):
    """The floor, with the payload decoded after the ``SELECT`` and encoded before the
    ``UPDATE`` by this package's codec: no session object, no version conflict handling."""

    name = "raw psycopg + codec"
    table = "raw_sessions_codec"

    def setup(self) -> None:
        super().setup()
        self.serializer = codec_serializer()

    def read(self, handle: Any) -> None:
        row = self._select(handle)
        assert codec.decode(row[0], "benchmark", self.serializer)["cart"]

    def cycle(self, handle: Any, counter: int) -> None:
        row = self._select(handle)
        data = codec.decode(row[0], "benchmark", self.serializer)
        data["counter"] = counter
        self._update(handle, row, codec.encode(data, "benchmark", self.serializer))


class DjangoCursorCodec(RawPsycopgCodec):
    """The same statements and codec through Django's ``connection.cursor()`` (its
    connection handling, its cursor wrapper and, unless ``--prepared``, client-side binding):
    what any engine that uses Django's database connections pays."""

    name = "django cursor + codec"
    table = "raw_sessions_django"

    def _execute(self, sql: str, params: Any) -> Any:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if sql.startswith("SELECT") else None


LIFETIME = datetime.timedelta(weeks=2)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def codec_serializer() -> Any:
    from django.core.signing import JSONSerializer

    return JSONSerializer


def contenders() -> list[Contender]:
    return [
        SessionStoreContender(BASELINE, SQLStore),
        SessionStoreContender("django db", DjangoDBStore),
        RawPsycopg(),
        RawPsycopgCodec(),
        DjangoCursorCodec(),
    ]
