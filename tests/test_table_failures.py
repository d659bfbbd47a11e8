"""The Table engine against a store that stalls, vanishes or holds damaged entities.

Each test that stops Azurite (SIGSTOP, as a frozen host or a failover does) runs its own,
so the rest of the suite never waits on a stopped server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import io
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import UpdateMode
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends import table
from django_azure_sessions.backends.table import TableStorage
from django_azure_sessions.backends.table_client import TableStorageError
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Record, SessionTooLarge, utcnow

from .fixtures.demo import demo_site
from .fixtures.engines import configured
from .fixtures.proxy import StallingProxy, frozen
from .fixtures.table import ACCOUNT_KEY, TABLE_NAME, Azurite, table_settings
from .fixtures.tls import self_signed_certificate

ENGINE = "django_azure_sessions.backends.table"


@pytest.fixture(scope="module")
def own_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """An Azurite for this module alone: its tests stop it."""
    from azure.data.tables import TableClient

    server = Azurite(tmp_path_factory.mktemp("azurite-failures"))
    server.start()
    # Made here, so that no test's budget pays for creating it on its first save.
    with TableClient.from_connection_string(server.connection_string, TABLE_NAME) as client:
        client.create_table()
    yield server
    server.stop()


def stopped(server: Azurite) -> contextlib.AbstractContextManager[None]:
    """Azurite frozen (SIGSTOP): connections are accepted by the kernel, nothing answers."""
    return frozen(server.process)


def store(server: Azurite, **azure_sessions: Any) -> contextlib.AbstractContextManager[Any]:
    return contextlib.contextmanager(configured)(
        "table", {"TABLE": table_settings(server), **azure_sessions}
    )


def storage_of(engine: type[Any]) -> TableStorage:
    storage = engine.get_storage()
    assert isinstance(storage, TableStorage)
    return storage


def run(is_async: bool, method: Callable[..., Any], *args: Any) -> Any:
    return async_to_sync(method)(*args) if is_async else method(*args)


# Stall: every operation ends within TIMEOUT (+ 1 s), and the next one after resuming works.


@pytest.mark.slow
@pytest.mark.parametrize("timeout", [None, 1], ids=["default", "timeout1"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("operation", ["load", "save"])
def test_a_stalled_table_costs_at_most_the_budget(
    own_azurite: Azurite, timeout: int | None, is_async: bool, operation: str
) -> None:
    extra = {} if timeout is None else {"TIMEOUT": timeout}
    budget = 5 if timeout is None else timeout
    with store(own_azurite, **extra) as engine:
        session = engine()
        session["cart"] = {"mug": 1}
        session.save()
        key = session.session_key
        assert engine(key).load() == {"cart": {"mug": 1}}  # a pooled connection, then the stall
        victim = engine(key)
        if operation == "save":
            run(is_async, victim.load if not is_async else victim.aload)
            victim["cart"] = {"mug": 2}
        method = getattr(victim, ("a" if is_async else "") + operation)
        with stopped(own_azurite):
            started = time.monotonic()
            with pytest.raises(SessionStoreUnavailable) as info:
                run(is_async, method)
            took = time.monotonic() - started
        assert took <= budget + 1, took
        assert victim.unavailable
        message = str(info.value)
        assert "djangosessions" in message
        assert ACCOUNT_KEY not in message
        assert info.value.__cause__ is not None
        # Resumed: no restart, the next request reads and writes.
        again = engine(key)
        # A write that timed out may still land when the store resumes: it was sent.
        expected = [{"cart": {"mug": 1}}] + ([{"cart": {"mug": 2}}] if operation == "save" else [])
        assert run(is_async, again.aload if is_async else again.load) in expected
        again["cart"] = {"mug": 3}
        run(is_async, again.asave if is_async else again.save)
        assert engine(key).load() == {"cart": {"mug": 3}}


# Outage through the demo site: 503 or a degraded session, and nothing lost.


def _sign_in_and_fill(client: Client) -> str:
    from testproject.demo.apps import DEMO_PASSWORD, DEMO_USERNAME

    assert client.login(username=DEMO_USERNAME, password=DEMO_PASSWORD)
    assert client.post("/cart/add/coffee/").status_code in (200, 302)
    assert client.post("/cart/add/mug/").status_code in (200, 302)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["raise", "degrade"])
def test_an_outage_through_the_demo_site(own_azurite: Azurite, policy: str) -> None:
    from testproject.demo.apps import create_demo_user

    azure_sessions = {
        "TABLE": table_settings(own_azurite),
        "KEY_PREFIX": f"demo{uuid.uuid4().hex[:6]}:",
        "TIMEOUT": 1,
        "ON_UNAVAILABLE": policy,
    }
    with demo_site(ENGINE, azure_sessions):
        create_demo_user()
        client = Client()
        cookie = _sign_in_and_fill(client)
        stored = storage_of(type(client.session)).load(keys.storage_id(cookie))
        assert stored is not None
        with stopped(own_azurite):
            for method, path in [
                ("get", "/"),
                ("get", "/cart.json"),
                ("post", "/cart/add/filters/"),
            ]:
                response = getattr(client, method)(path)
                assert settings.SESSION_COOKIE_NAME not in response.cookies, path
                if policy == "raise":
                    assert response.status_code == 503, path
                    assert int(response["Retry-After"]) >= 1
                else:
                    assert response.status_code in (200, 302), path
                    if path == "/cart.json":
                        assert response.json() == {"cart": {}}
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie
        after = storage_of(type(client.session)).load(keys.storage_id(cookie))
        assert after is not None
        assert after.version == stored.version
        session = client.session
        assert session[USER_ID_KEY] is not None
        assert session["cart"] == {"coffee": 1, "mug": 1}
        assert client.get("/cart.json").json() == {"cart": {"coffee": 1, "mug": 1}}


# Damaged entities: suspicious, no session, never a 500; listing skips and counts them.


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda entity: entity.pop(name)


def _put(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda entity: entity.__setitem__(name, value)


DAMAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "expires_missing": _drop("Expires"),
    "expires_string": _put("Expires", "2099-01-01T00:00:00Z"),
    "expires_int": _put("Expires", 2_000_000_000),
    "user_id_int": _put("UserId", 42),
    "data_string": _put("Data", "not binary"),
    "data_missing": _drop("Data"),
    "data_int": _put("Data", 7),
    "created_string": _put("Created", "yesterday"),
    "updated_string": _put("Updated", "just now"),
    "device_int": _put("Device", 7),
    "chunk_gap": _put("Data2", b"orphan"),
    "chunk_string": _put("Data1", "text"),
}


def _damage(storage: TableStorage, key: str, damage: Callable[[dict[str, Any]], None]) -> None:
    client = storage.raw_client()
    storage_id = keys.storage_id(key)
    entity = dict(client.get_entity(storage._partition(storage_id), "s." + storage_id))
    damage(entity)
    client.upsert_entity(entity, mode=UpdateMode.REPLACE)


def _saved(engine: type[Any], **data: Any) -> str:
    session = engine()
    session.update(data)
    session[USER_ID_KEY] = "7"
    session.save()
    return session.session_key  # type: ignore[no-any-return]


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_damaged_entity_is_no_session(
    table_engine: type[Any], damage: str, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    key = _saved(table_engine, cart={"mug": 1})
    _damage(storage_of(table_engine), key, DAMAGES[damage])
    session = table_engine(key)
    with caplog.at_level(logging.WARNING, "django.security.SuspiciousSession"):
        assert run(is_async, session.aload if is_async else session.load) == {}
    assert any(r.name == "django.security.SuspiciousSession" for r in caplog.records)
    assert session.session_key is None  # a new key on save, as for an unknown cookie
    session["cart"] = {"coffee": 2}
    run(is_async, session.asave if is_async else session.save)
    assert session.session_key not in (None, key)
    assert table_engine(session.session_key).load() == {"cart": {"coffee": 2}}
    table_engine(key).delete()  # deleting a damaged session does not fail either


@pytest.mark.django_db
def test_a_request_with_a_damaged_session_gets_a_working_one(own_azurite: Azurite) -> None:
    azure_sessions = {"TABLE": table_settings(own_azurite), "KEY_PREFIX": "dmg:"}
    with demo_site(ENGINE, azure_sessions):
        client = Client()
        assert client.post("/cart/add/mug/").status_code in (200, 302)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        _damage(storage_of(type(client.session)), cookie, DAMAGES["expires_string"])
        assert client.get("/cart.json").json() == {"cart": {}}
        assert client.post("/cart/add/coffee/").status_code in (200, 302)
        assert client.cookies[settings.SESSION_COOKIE_NAME].value != cookie
        assert client.get("/cart.json").json() == {"cart": {"coffee": 1}}


@pytest.mark.django_db
def test_listing_skips_and_counts_damaged_entities(
    own_azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.management import call_command

    with store(own_azurite, KEY_PREFIX=f"list{uuid.uuid4().hex[:6]}:") as engine:
        storage = storage_of(engine)
        healthy = {keys.storage_id(_saved(engine, n=n)) for n in range(3)}
        for damage in DAMAGES.values():
            _damage(storage, _saved(engine, n=-1), damage)
        with caplog.at_level(logging.WARNING, "django.security.SuspiciousSession"):
            # Azurite's filter leaves out an Expires stored as an Int64 (compared to a date):
            # not listed, so not counted; every other damage is listed and counted.
            listable = len(DAMAGES) - 1
            page = storage.page(None, 100)
            assert {record.key for record in page.records} == healthy
            assert page.damaged == listable
            assert async_to_sync(storage.apage)(None, 100).damaged == listable
            listed = list(storage.records(batch_size=4))
            assert sum(record is None for record in listed) == listable
            assert {r.key for r in listed if r is not None} == healthy
            assert {r.key for r in storage.user_records("7")} == healthy
            storage.clear_expired()
            out = io.StringIO()
            call_command(
                "migratesessions",
                "--from",
                ENGINE,
                "--to",
                "django_azure_sessions.backends.sql",
                "--dry-run",
                stdout=out,
            )
            assert f"{listable} expired, empty or unreadable skipped" in out.getvalue()


_VALUES = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.binary(max_size=40),
    st.integers(-(2**31), 2**31 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.uuids(),
    st.datetimes(
        min_value=datetime.datetime(1601, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=st.just(datetime.timezone.utc),
    ),
)
_NAMES = st.sampled_from(
    ["Expires", "Created", "Updated", "Device", "UserId", "Data", "Data1", "Data3", "Other"]
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=4))
def test_any_stored_properties_never_break_a_load(
    table_engine: type[Any], changes: dict[str, Any]
) -> None:
    key = _saved(table_engine, n=1)
    storage = storage_of(table_engine)

    def change(entity: dict[str, Any]) -> None:
        for name, value in changes.items():
            if value is None:
                entity.pop(name, None)
            else:
                entity[name] = value

    try:
        _damage(storage, key, change)
    except (HttpResponseError, TypeError, ValueError):
        reject()  # a value the SDK or the service does not store
    try:
        data = table_engine(key).load()
    except SessionStoreUnavailable:
        return
    assert data in ({}, {"n": 1, USER_ID_KEY: "7"})
    storage.page(None, 5)


# Size: the limit is what the service enforces, at the byte.


def test_the_size_limit_is_the_entity_as_sent(table_engine: type[Any]) -> None:
    storage = storage_of(table_engine)
    expires = utcnow() + datetime.timedelta(hours=1)
    probe = keys.storage_id(keys.new_key())
    low, high = 500_000, table.MAX_ENTITY
    while low < high:  # the largest data the engine accepts
        middle = (low + high + 1) // 2
        try:
            storage._entity(Record(probe, bytes(middle), expires), expires)
            low = middle
        except SessionTooLarge:
            high = middle - 1
    assert abs(low - table.MAX_DATA) < 2048
    key = keys.storage_id(keys.new_key())
    record = Record(key, os.urandom(low), expires)
    version = storage.create(record)
    assert version is not None
    loaded = storage.load(key)
    assert loaded is not None
    assert loaded.data == record.data
    bigger = Record(key, os.urandom(low), expires + datetime.timedelta(hours=2))
    assert storage.update(bigger, loaded) is not None  # a replace moving its index entry
    loaded = storage.load(key)
    assert loaded is not None
    assert loaded.data == bigger.data
    again = Record(key, os.urandom(low), loaded.expires)
    assert storage.update(again, loaded) is not None  # a plain replace
    with pytest.raises(SessionTooLarge, match="1,048,576"):
        storage.create(Record(keys.storage_id(keys.new_key()), bytes(low + 1), expires))
    # and the limit is tight: the service refuses the entity one more byte makes
    entity = storage._entity(Record(key, bytes(low), expires), expires)
    last = max((name for name in entity if name.startswith("Data")), key=len)
    last = sorted(name for name in entity if name.startswith("Data") and len(name) == len(last))[
        -1
    ]
    entity[last] += b"\0"  # the entity of one byte more
    with pytest.raises(HttpResponseError, match=r"EntityTooLarge|larger"):
        storage.raw_client().upsert_entity(entity, mode=UpdateMode.REPLACE)


# The async transport: one SSL context and one pool per client, whatever the environment.


def _timed_loads(engine: type[Any], key: str, count: int, is_async: bool) -> float:
    if not is_async:
        started = time.perf_counter()
        for _ in range(count):
            assert engine(key).load()["n"] == 1
        return time.perf_counter() - started

    async def loads() -> float:
        started = time.perf_counter()
        for _ in range(count):
            assert (await engine(key).aload())["n"] == 1
        return time.perf_counter() - started

    return asyncio.run(loads())


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_ca_bundle_in_the_environment_costs_nothing_per_request(
    own_azurite: Azurite,
    stalling_proxy: type[StallingProxy],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    is_async: bool,
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    proxy = stalling_proxy("127.0.0.1", own_azurite.port)
    proxied = Azurite(own_azurite.workdir, port=proxy.port)
    import certifi

    bundle = certifi.where()  # a real bundle: an SSL context of it costs tens of ms to build
    timings: dict[bool, float] = {}
    for with_bundle in (False, True, False, True):
        if with_bundle:
            monkeypatch.setenv(variable, bundle)
        else:
            monkeypatch.delenv(variable, raising=False)
        with store(proxied) as engine:
            key = _saved(engine, n=1)
            engine(key).load()
            before = len(proxy._pairs)
            took = _timed_loads(engine, key, 60, is_async)
            assert len(proxy._pairs) - before <= 2, "a new connection per request"
            timings[with_bundle] = min(took, timings.get(with_bundle, took))
    assert timings[True] < 2 * timings[False] + 0.05, timings


@pytest.mark.slow
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_bundle_that_does_not_trust_the_server_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_async: bool
) -> None:
    cert, key_file = self_signed_certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = self_signed_certificate(other)
    server = Azurite(
        tmp_path / "azurite",
        scheme="https",
        extra_args=["--cert", str(cert), "--key", str(key_file)],
    )
    server.start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_cert))
        with store(server, TIMEOUT=2) as engine:
            session = engine(keys.new_key())
            with pytest.raises((SessionStoreUnavailable, TableStorageError, AzureError)):
                run(is_async, session.aload if is_async else session.load)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        with store(server) as engine:
            saved = engine()
            saved["n"] = 1
            run(is_async, saved.asave if is_async else saved.save)
            fresh = engine(saved.session_key)
            assert run(is_async, fresh.aload if is_async else fresh.load) == {"n": 1}
    finally:
        server.stop()


# What the service answers: "cannot serve now" is an outage; anything else an error.


class _Answering(http.server.BaseHTTPRequestHandler):
    status = 503

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"odata.error": {"code": "ServerBusy", "message": {"value": "no"}}})
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, SessionStoreUnavailable),
        (500, SessionStoreUnavailable),
        (429, SessionStoreUnavailable),
        (403, TableStorageError),
    ],
)
def test_what_the_service_answers_decides_outage_or_error(
    tmp_path: Path, status: int, expected: type[Exception]
) -> None:
    handler = type("Handler", (_Answering,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake = Azurite(tmp_path, port=server.server_address[1])
        options = {"retry_backoff_factor": 0.01}
        with store(fake, TIMEOUT=2, TABLE=table_settings(fake, OPTIONS=options)) as engine:
            started = time.monotonic()
            with pytest.raises(expected) as info:
                engine(keys.new_key()).load()
            assert time.monotonic() - started < 3
            assert info.value.__cause__ is not None
            assert getattr(info.value.__cause__, "status_code", None) == status
            assert ACCOUNT_KEY not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_cleanup_while_connections_are_reset_removes_every_expired_session(
    own_azurite: Azurite,
    stalling_proxy: type[StallingProxy],
    monkeypatch: pytest.MonkeyPatch,
    is_async: bool,
) -> None:
    """Removals and reads whose connection is reset go out again: the run ends, with every
    expired session and its entries gone, every live one kept."""
    monkeypatch.setattr(table, "BATCH", 8)  # many transactions, so many of them meet a reset
    proxy = stalling_proxy("127.0.0.1", own_azurite.port)
    proxied = Azurite(own_azurite.workdir, port=proxy.port)
    with store(proxied) as engine:
        storage = storage_of(engine)
        namespace = f"reset{uuid.uuid4().hex[:8]}"
        storage.namespace = namespace  # a fresh key space in the module's table
        if not is_async:  # the sync path in threads, as where no event loop of its own may run
            monkeypatch.setattr(storage.runner, "may_run_a_loop", lambda: False)
        now = utcnow()
        made: dict[bool, set[str]] = {True: set(), False: set()}
        for number in range(160):
            alive = number % 4 == 0
            record = Record(
                keys.storage_id(keys.new_key()),
                b"data",
                now + datetime.timedelta(hours=1 if alive else -2),
                user_id=f"user{number % 7}" if number % 2 else None,
                updated=now,
            )
            assert storage.create(record) is not None
            made[alive].add(record.key)

        done = threading.Event()

        def reset() -> None:
            while not done.wait(0.15):
                proxy.drop()

        resetter = threading.Thread(target=reset, daemon=True)
        resetter.start()
        try:
            removed = run(is_async, storage.aclear_expired if is_async else storage.clear_expired)
        finally:
            done.set()
            resetter.join()
        assert removed == len(made[False])
        rows = {
            entity["RowKey"].rsplit(".", 1)[-1]
            for entity in storage.raw_client().query_entities(
                "PartitionKey ge @lo and PartitionKey lt @hi",
                parameters={"lo": f"{namespace}.", "hi": f"{namespace}/"},
            )
        }
        assert rows == made[True]
        assert storage.count_expired() == 0
