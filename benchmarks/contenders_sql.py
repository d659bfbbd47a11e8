"""SQL suite: this package's SQL engine, Django's db engine, and raw psycopg as the floor.

All three on the same PostgreSQL database (the test database ``das_benchmarks``).
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
    SELECT = (
        "SELECT data, version, expires, user_id FROM raw_sessions WHERE key = %s AND expires > %s"
    )
    UPDATE = (
        "UPDATE raw_sessions SET data = %s, expires = %s, user_id = %s,"
        " version = version + 1, updated = %s WHERE key = %s AND version = %s"
    )
    INSERT = (
        "INSERT INTO raw_sessions (key, data, expires, user_id, version, created, updated)"
        " VALUES (%s, %s, %s, %s, 1, %s, %s)"
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
            "CREATE TABLE raw_sessions (LIKE django_azure_sessions INCLUDING ALL)"
        )
        self.payload = codec.encode(PAYLOAD, "benchmark", codec_serializer())

    def teardown(self) -> None:
        self.connection.execute("DROP TABLE raw_sessions")
        self.connection.close()

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def _select(self, handle: Any) -> Any:
        row = self.connection.execute(self.SELECT, (handle, _now()), prepare=True).fetchone()
        assert row is not None
        return row

    def read(self, handle: Any) -> None:
        self._select(handle)

    def cycle(self, handle: Any, counter: int) -> None:
        row = self._select(handle)
        now = _now()
        self.connection.execute(
            self.UPDATE,
            (self.payload, now + LIFETIME, row[3], now, handle, row[1]),
            prepare=True,
        )

    def create(self) -> Any:
        key = keys.new_key()
        now = _now()
        self.connection.execute(
            self.INSERT, (key, self.payload, now + LIFETIME, "1042", now, now), prepare=True
        )
        return key


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
    ]
