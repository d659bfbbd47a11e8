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
    """The floor: one SELECT, one UPDATE, of an already-encoded payload."""

    name = "raw psycopg"

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
            "CREATE TABLE IF NOT EXISTS raw_sessions (key varchar(64) PRIMARY KEY,"
            " data bytea NOT NULL, expires timestamptz NOT NULL, version bigint NOT NULL)"
        )
        self.payload = codec.encode(PAYLOAD, "benchmark", codec_serializer())

    def teardown(self) -> None:
        self.connection.execute("DROP TABLE raw_sessions")
        self.connection.close()

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def read(self, handle: Any) -> None:
        row = self.connection.execute(
            "SELECT data, version FROM raw_sessions WHERE key = %s AND expires > now()",
            (handle,),
        ).fetchone()
        assert row is not None

    def cycle(self, handle: Any, counter: int) -> None:
        row = self.connection.execute(
            "SELECT data, version FROM raw_sessions WHERE key = %s AND expires > now()",
            (handle,),
        ).fetchone()
        assert row is not None
        self.connection.execute(
            "UPDATE raw_sessions SET data = %s, expires = %s, version = version + 1"
            " WHERE key = %s AND version = %s",
            (self.payload, _expires(), handle, row[1]),
        )

    def create(self) -> Any:
        key = keys.new_key()
        self.connection.execute(
            "INSERT INTO raw_sessions (key, data, expires, version) VALUES (%s, %s, %s, 1)",
            (key, self.payload, _expires()),
        )
        return key


def _expires() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(weeks=2)


def codec_serializer() -> Any:
    from django.core.signing import JSONSerializer

    return JSONSerializer


def contenders() -> list[Contender]:
    return [
        SessionStoreContender(BASELINE, SQLStore),
        SessionStoreContender("django db", DjangoDBStore),
        RawPsycopg(),
    ]
