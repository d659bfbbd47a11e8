"""The sync and async paths of an engine send the store the same commands."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import re
import urllib.parse
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from azure.core.exceptions import ResourceExistsError
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_azure_sessions.backends.redis import SessionStore as RedisSession
from django_azure_sessions.backends.sql import SessionStore as SQLSession
from django_azure_sessions.backends.sql import SQLStorage
from django_azure_sessions.backends.table import BUCKET_SECONDS, TableStorage, bucket_end
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Record, utcnow

from .fixtures.engines import configured
from .fixtures.redis import RedisServer
from .fixtures.table import Azurite, table_settings


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


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("alias", ["default", "postgres", "mariadb"])
def test_sql_touch_is_the_same_sync_and_async(alias: str) -> None:
    """A storage operation that no session operation above reaches yet."""
    for _ in configured("sql", {"SQL": {"DATABASE": alias}}):
        storage = SQLStorage.get()
        key = keys.storage_id(keys.new_key())
        now = utcnow()
        record = Record(key, b"x", now + datetime.timedelta(hours=1), updated=now)
        record.version = storage.create(record)
        sent: dict[bool, list[str]] = {}
        for is_async in (False, True):
            touch = async_to_sync(storage.atouch) if is_async else storage.touch
            with CaptureQueriesContext(connections[alias]) as queries:
                assert touch(record, record) == record.version
            sent[is_async] = [query["sql"] for query in queries]
        assert sent[False] == sent[True]
        assert [sql.split()[0] for sql in sent[False]] == ["UPDATE"]


# Table: what each storage operation sends, as azure-core hands it to the transport.

_BOUNDARY = re.compile(r"\b(batch|changeset)_[0-9a-f-]{36}")
_HTTP_DATE = re.compile(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT")
_ETAG = re.compile(r"W/\"datetime'[^']*'\"")
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_HOUR = re.compile(r"\bx\.\d{11}")  # expiry-index rows and bounds: they depend on the time
_HEADERS = ("If-Match", "Content-Type", "Accept", "Prefer", "DataServiceVersion")


class WireLog:
    """An azure-core ``raw_request_hook``: every request sent, made comparable across runs.

    Each request reads as its method, URL (path and query, unquoted), the headers that say
    what it does (``If-Match`` above all) and its body; what differs from run to run and
    path to path by nature (the time, the namespace, multipart boundaries, ETag values) is
    replaced by a placeholder.
    """

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.namespace = "?"

    def __call__(self, pipeline_request: Any) -> None:
        request = pipeline_request.http_request
        parts = urllib.parse.urlsplit(request.url)
        url = urllib.parse.unquote(parts.path + (f"?{parts.query}" if parts.query else ""))
        headers = [
            f"{name}: {request.headers[name]}" for name in _HEADERS if name in request.headers
        ]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        self.sent.append(self._plain("\n".join([f"{request.method} {url}", *headers, body])))

    def _plain(self, text: str) -> str:
        text = _BOUNDARY.sub(r"\1_<boundary>", text)
        text = _HTTP_DATE.sub("<date>", text)
        text = _ETAG.sub("<etag>", text)
        text = _ISO_TIME.sub("<time>", text.replace("%3A", ":"))
        text = _HOUR.sub("x.<hour>", text)
        return text.replace(self.namespace, "<namespace>")

    def take(self) -> list[str]:
        taken, self.sent = self.sent, []
        return taken


def _table_at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def table_requests(storage: TableStorage, log: WireLog, is_async: bool) -> list[tuple[str, Any]]:
    """Each storage operation of a session's life, with the requests it sent."""
    sent: list[tuple[str, Any]] = []

    def run(name: str, method: str, *args: Any, ordered: bool = True) -> Any:
        log.take()
        bound = getattr(storage, f"a{method}" if is_async else method)
        result = async_to_sync(bound)(*args) if is_async else bound(*args)
        requests = log.take()
        sent.append((name, requests if ordered else sorted(requests)))
        return result

    # The same keys and times on both paths, relative to the middle of an hour a day ahead;
    # each path has a namespace of its own.
    middle = bucket_end(utcnow()) + 24 * BUCKET_SECONDS + BUCKET_SECONDS // 2
    now = utcnow()
    key = keys.storage_id("samepaths" + "0" * 23)
    record = Record(key, b"cart", _table_at(middle), created=now, updated=now, device="ua")
    record.version = run("create", "create", record)
    assert run("load", "load", key) is not None
    changed = dataclasses.replace(record, data=b"cart 2", updated=utcnow())
    changed.version = run("update", "update", changed, record)
    moved = dataclasses.replace(changed, expires=_table_at(middle + 3 * BUCKET_SECONDS))
    moved.version = run("update, a new hour", "update", moved, changed)
    signed_in = dataclasses.replace(moved, user_id="7")
    signed_in.version = run("sign in", "update", signed_in, moved)
    touch = Record(key, b"", signed_in.expires + datetime.timedelta(minutes=1), updated=utcnow())
    touched = dataclasses.replace(signed_in, expires=touch.expires, updated=touch.updated)
    touched.version = run("touch", "touch", touch, signed_in)
    touch = dataclasses.replace(touch, expires=_table_at(middle + 5 * BUCKET_SECONDS))
    assert run("touch, a new hour", "touch", touch, touched) is not None
    assert len(run("user_records", "user_records", "7")) == 1
    assert len(run("page", "page", None, 10).records) == 1
    gone = keys.storage_id("samepaths" + "1" * 23)
    storage.create(Record(gone, b"old", now - datetime.timedelta(hours=2), user_id="7"))
    assert run("clear_expired", "clear_expired", ordered=False) == 1  # partitions at once
    run("delete", "delete", key)
    assert run("load absent", "load", key) is None
    return sent


def test_table_requests_are_the_same_sync_and_async(azurite: Azurite) -> None:
    log = WireLog()
    sent: dict[bool, list[tuple[str, Any]]] = {}
    for is_async in (False, True):
        section = table_settings(azurite, OPTIONS={"raw_request_hook": log})
        for store in configured("table", {"TABLE": section}):
            storage = store.get_storage()
            assert isinstance(storage, TableStorage)
            with contextlib.suppress(ResourceExistsError):
                storage.raw_client().create_table()
            log.namespace = storage.namespace
            sent[is_async] = table_requests(storage, log, is_async)
    assert sent[False] == sent[True]
    by_name = dict(sent[False])
    assert [request.split(" ")[0] for request in by_name["update"]] == ["PUT"]
    assert "\nIf-Match: <etag>" in by_name["update"][0]
    assert [request.split(" ")[0] for request in by_name["touch"]] == ["PATCH"]
    assert "\nIf-Match: <etag>" in by_name["touch"][0]
    assert [request.split(" ")[0] for request in by_name["touch, a new hour"]] == ["POST"]
