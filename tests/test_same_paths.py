"""The sync and async paths of an engine send the store the same commands."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_azure_sessions.backends.redis import SessionStore as RedisSession
from django_azure_sessions.backends.sql import SessionStore as SQLSession
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import utcnow

from .fixtures.engines import configured
from .fixtures.redis import RedisServer


def operations(store: type[Any], is_async: bool) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Each operation of a session's life, as a name and a call on the given path."""

    def call(session: Any, name: str) -> Callable[[], Any]:
        method = getattr(session, f"a{name}" if is_async else name)
        return async_to_sync(method) if is_async else method

    session = store()
    session["cart"] = {"mug": 1}
    yield "create", call(session, "save")
    key = session.session_key
    yield "load", call(store(key), "load")
    changed = store(key)
    call(changed, "load")()
    changed["cart"] = {"mug": 2}
    yield "update", call(changed, "save")
    signed_in = store(key)
    call(signed_in, "load")()
    signed_in[USER_ID_KEY] = "7"
    yield "sign in", call(signed_in, "save")
    for name, days in (("touch", 1), ("touch past the index", 60)):
        loaded = store(key)
        call(loaded, "load")()
        record = loaded._record
        later = dataclasses.replace(
            record, expires=record.expires + datetime.timedelta(days=days), updated=utcnow()
        )
        yield name, partial(call(loaded.get_storage(), "touch"), later, record)
    yield "delete", call(store(key), "delete")
    yield "load absent", call(store(keys.new_key()), "load")


# The test's own commands, and a new connection's set-up (each event loop of async_to_sync
# gets a client of its own).
NOT_THE_OPERATION = {
    f"cmdstat_{name}"
    for name in ("info", "config|resetstat", "hello", "ping", "client|setinfo", "select")
}


@pytest.fixture
def own_redis(redis_server: RedisServer) -> Iterator[type[Any]]:
    yield from configured("redis", {"REDIS": {"URL": redis_server.url}})


def test_redis_commands_are_the_same_sync_and_async(
    own_redis: type[Any], redis_server: RedisServer
) -> None:
    assert own_redis is RedisSession
    client = redis_server.client()
    for _, operation in operations(own_redis, False):  # the scripts loaded, as in use
        operation()
    sent: dict[bool, list[tuple[str, dict[str, int]]]] = {}
    for is_async in (False, True):
        sent[is_async] = []
        for name, operation in operations(own_redis, is_async):
            client.config_resetstat()
            operation()
            stats = client.info("commandstats")
            commands = {k: v["calls"] for k, v in stats.items() if k not in NOT_THE_OPERATION}
            sent[is_async].append((name, commands))
    assert sent[False] == sent[True]
    assert dict(sent[False])["load"] == {"cmdstat_get": 1}
    assert dict(sent[False])["touch"]["cmdstat_evalsha"] == 1
    assert dict(sent[False])["touch past the index"]["cmdstat_evalsha"] == 2


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("alias", ["default", "postgres", "mariadb"])
def test_sql_statements_are_the_same_sync_and_async(alias: str) -> None:
    for store in configured("sql", {"SQL": {"DATABASE": alias}}):
        assert store is SQLSession
        sent: dict[bool, list[tuple[str, list[str]]]] = {}
        for is_async in (False, True):
            sent[is_async] = []
            for name, operation in operations(store, is_async):
                with CaptureQueriesContext(connections[alias]) as queries:
                    operation()
                sent[is_async].append((name, [query["sql"].split()[0] for query in queries]))
        assert sent[False] == sent[True]
        assert dict(sent[False])["update"] == ["UPDATE"]
