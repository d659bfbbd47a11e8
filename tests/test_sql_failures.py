"""The SQL engine when its database stalls, goes away, or holds rows it did not write.

Stalls go through ``tests.fixtures.sql_proxy``: the test databases of PostgreSQL and MariaDB
reached through a TCP proxy that stops forwarding, as a frozen network does.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import ProgrammingError, connections
from django.test import Client, override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends.sql import SessionStore, SQLStorage
from django_azure_sessions.core import keys
from django_azure_sessions.core.storage import DamagedRecord, Record, utcnow
from django_azure_sessions.transfer import copy
from testproject.demo.apps import DEMO_PASSWORD, DEMO_USERNAME, create_demo_user

from .fixtures.demo import demo_site
from .fixtures.engines import configured
from .fixtures.proxy import StallingProxy

PROXIED = ["postgres_proxy", "mariadb_proxy"]
ALL_SQL = ["default", "postgres", "mariadb", *PROXIED]
SQL_ENGINE = "django_azure_sessions.backends.sql"
SUSPICIOUS = "django.security.SuspiciousSession"


@contextlib.contextmanager
def sql_on(alias: str, **azure_sessions: Any) -> Iterator[type[SessionStore]]:
    yield from configured("sql", {"SQL": {"DATABASE": alias}, **azure_sessions})


@pytest.fixture(params=PROXIED)
def proxied(request: pytest.FixtureRequest, sql_proxy: dict[str, StallingProxy]) -> Iterator[str]:
    yield request.param
    connections[request.param].close()


def run(path: str, method: Callable[..., Any], *args: Any) -> Any:
    """``method`` (a sync method) or its async twin (``a`` + its name), driven to the end."""
    if path == "sync":
        return method(*args)
    twin = getattr(method.__self__, "a" + method.__name__)
    return async_to_sync(twin)(*args)


def raises_within(budget: float, call: Callable[[], Any]) -> SessionStoreUnavailable:
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable) as raised:
        call()
    took = time.monotonic() - started
    assert took < budget + 1, f"took {took:.1f} s"
    return raised.value


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize(
    "timeout", [pytest.param(None, marks=pytest.mark.slow, id="default"), pytest.param(1, id="1s")]
)
def test_a_stall_costs_at_most_the_budget(
    proxied: str, sql_proxy: dict[str, StallingProxy], path: str, timeout: int | None
) -> None:
    proxy = sql_proxy[proxied]
    budget = timeout or 5
    with sql_on(proxied, **({"TIMEOUT": timeout} if timeout else {})) as store:
        session = store()
        session["cart"] = {"mug": 1}
        session.save()
        key = session.session_key

        reader = store(key)
        store(key).load()  # the connection is open: the stall comes mid-statement
        proxy.stall()
        error = raises_within(budget, lambda: run(path, reader.load))
        assert reader.unavailable
        assert reader.session_key == key  # not logged out
        assert error.engine == "sql"
        assert repr(proxied) in error.store
        assert "no answer within" in error.reason
        proxy.resume()
        assert store(key)["cart"] == {"mug": 1}  # no restart: Django reconnects

        writer = store(key)
        writer["cart"] = {"mug": 2}  # loads: the connection is open again
        proxy.stall()
        raises_within(budget, lambda: run(path, writer.save))
        proxy.resume()
        # The UPDATE may still reach the server once the network flows: a write whose answer
        # never came has an unknown outcome, but the session is one whole version or other.
        assert store(key)["cart"] in ({"mug": 1}, {"mug": 2})
        writer = store(key)
        writer["cart"] = {"mug": 3}
        run(path, writer.save)
        assert store(key)["cart"] == {"mug": 3}


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_stalled_touch_costs_at_most_the_budget(
    proxied: str, sql_proxy: dict[str, StallingProxy], path: str
) -> None:
    with sql_on(proxied, TIMEOUT=1):
        storage = SQLStorage.get()
        now = utcnow()
        hour = datetime.timedelta(hours=1)
        record = Record(keys.storage_id(keys.new_key()), b"x", now + hour, updated=now)
        record.version = storage.create(record)  # the connection is open
        touch = Record(record.key, b"", now + 2 * hour, updated=utcnow())
        sql_proxy[proxied].stall()
        error = raises_within(1, lambda: run(path, storage.touch, touch, record))
        assert "touch" in error.reason
        sql_proxy[proxied].resume()
        assert run(path, storage.touch, touch, record) == record.version


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
def test_a_reconnect_through_a_stall_is_bounded_by_connect_timeout(
    proxied: str, sql_proxy: dict[str, StallingProxy]
) -> None:
    """A new connection has no socket to cut until it is made: OPTIONS' connect_timeout
    (2 s in tests/settings.py) bounds it, as docs/sql.md tells users to set."""
    with sql_on(proxied, TIMEOUT=1) as store:
        connections[proxied].close()
        sql_proxy[proxied].stall()
        raises_within(2 + 1, lambda: store("a" * 32).load())
        sql_proxy[proxied].resume()
        assert store("a" * 32).load() == {}


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
def test_errors_the_database_answers_are_not_unavailability() -> None:
    with sql_on("postgres") as store:
        storage = SQLStorage.get()
        assert isinstance(storage, SQLStorage)
        with pytest.raises(ProgrammingError):  # answered by the server: not unavailability
            storage._run("load", "SELECT no_such_column FROM django_azure_sessions", ())
        assert store("b" * 32).load() == {}  # the connection is still good


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
def test_the_store_is_named_without_a_secret(settings: Any) -> None:
    settings.DATABASES["postgres_proxy"]["PASSWORD"] = "s3cret-pw"
    try:
        with sql_on("postgres_proxy"):
            described = SQLStorage.get().describe()
    finally:
        settings.DATABASES["postgres_proxy"]["PASSWORD"] = ""
    assert "s3cret-pw" not in described
    assert "'postgres_proxy'" in described
    assert "postgresql" in described


# The demo site through a stalled database


def sign_in_and_fill_the_cart(client: Client) -> str:
    response = client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    for product in ("coffee", "coffee", "mug"):
        assert client.post(f"/cart/add/{product}/").status_code == 302
    assert client.get("/cart.json").json() == {"cart": {"coffee": 2, "mug": 1}}
    return client.cookies["sessionid"].value


@pytest.mark.django_db(databases=ALL_SQL, transaction=True)
@pytest.mark.parametrize("policy", ["raise", "degrade"])
def test_an_outage_through_the_demo_site(
    proxied: str, sql_proxy: dict[str, StallingProxy], policy: str
) -> None:
    section = {"KEY_PREFIX": "outage:", "SQL": {"DATABASE": proxied}, "TIMEOUT": 1}
    with demo_site(SQL_ENGINE, {**section, "ON_UNAVAILABLE": policy}):
        create_demo_user()
        client = Client()
        cookie = sign_in_and_fill_the_cart(client)
        sql_proxy[proxied].stall()
        requests = [
            ("get", "/"),
            ("post", "/cart/add/filters/"),
            ("get", "/cart.json"),
            ("get", "/session/"),
        ]
        for method, url in requests:
            started = time.monotonic()
            response = getattr(client, method)(url)
            assert time.monotonic() - started < 2 + 1  # connect_timeout, when reconnecting
            assert "sessionid" not in response.cookies
            assert client.cookies["sessionid"].value == cookie
            if policy == "raise":
                assert response.status_code == 503, url
                assert response["Retry-After"] == "1"
            else:
                assert response.status_code in (200, 302), url
                if url == "/cart.json":
                    assert response.json() == {"cart": {}}
        sql_proxy[proxied].resume()
        assert client.get("/cart.json").json() == {"cart": {"coffee": 2, "mug": 1}}
        assert client.session["_auth_user_id"]
        assert client.cookies["sessionid"].value == cookie


# Damaged rows (SQLite stores any value in any column)

DAMAGE = {
    "expires is text": "expires = 'garbage'",
    "expires is no date": "expires = '2026-13-45 10:00:00'",
    "expires is a blob": "expires = X'00FF'",
    "data is text": "data = 'not bytes'",
    "data is a number": "data = 42",
    "version is text": "version = 'abc'",
    "version is a real": "version = 1.5",
    "user id is a blob": "user_id = X'01'",
    "created is no date": "created = '2026-13-45 10:00:00'",
    "updated is a blob": "updated = X'00FF'",
    "device is a blob": "device = X'01'",
}


def damage(stored_id: str, assignment: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"UPDATE django_azure_sessions SET {assignment} WHERE key = %s",  # noqa: S608
            [stored_id],
        )


def suspicious(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SUSPICIOUS]


@pytest.mark.django_db(databases=ALL_SQL)
@pytest.mark.parametrize("assignment", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_row_is_no_session(assignment: str, caplog: pytest.LogCaptureFixture) -> None:
    with sql_on("default") as store:
        storage = SQLStorage.get()
        healthy = store()
        healthy["_auth_user_id"] = "7"
        healthy.save()
        victim = store()
        victim["_auth_user_id"] = "7"
        victim["cart"] = {"mug": 1}
        victim.save()
        stored_id = storage.prefix + keys.storage_id(victim.session_key)
        damage(stored_id, assignment)

        with caplog.at_level(logging.WARNING, logger=SUSPICIOUS):
            loaded = store(victim.session_key)
            assert loaded.load() == {}
            assert len(suspicious(caplog)) == 1
            assert async_to_sync(store(victim.session_key).aload)() == {}
            assert victim.session_key not in str(caplog.records)

            loaded["cart"] = {"coffee": 1}
            loaded.save()  # a new session replaces it
            assert loaded.session_key != victim.session_key
            assert store(loaded.session_key)["cart"] == {"coffee": 1}

            caplog.clear()
            page = storage.page(limit=1000)
            assert page.damaged == 1
            assert keys.storage_id(victim.session_key) not in {r.key for r in page.records}
            assert keys.storage_id(healthy.session_key) in {r.key for r in page.records}
            assert [r.key for r in storage.user_records("7")] == [
                keys.storage_id(healthy.session_key)
            ]
            assert list(storage.records()).count(None) == 1
            counts = copy(storage.records(), storage, dry_run=True)
            assert counts.skipped == 1
            assert suspicious(caplog)


@pytest.mark.django_db(databases=ALL_SQL)
def test_one_damaged_row_does_not_hide_a_page(caplog: pytest.LogCaptureFixture) -> None:
    with sql_on("default") as store:
        storage = SQLStorage.get()
        made = []
        for _ in range(5):
            session = store()
            session["a"] = 1
            session.save()
            made.append(keys.storage_id(session.session_key))
        damage(storage.prefix + made[2], DAMAGE["expires is no date"])
        page = storage.page(limit=3)
        rest = storage.page(page.next_cursor, limit=3)
        listed = [r.key for r in page.records] + [r.key for r in rest.records]
        assert sorted(listed) == sorted(made[:2] + made[3:])
        assert page.damaged + rest.damaged == 1


WHEN = "2030-01-01 00:00:00"


@pytest.mark.parametrize(
    "columns",
    [
        (None, 1, WHEN, None, WHEN, WHEN, None),
        (b"x", None, WHEN, None, WHEN, WHEN, None),
        (b"x", 1, None, None, WHEN, WHEN, None),
        (b"x", True, WHEN, None, WHEN, WHEN, None),
        (b"x", 1, datetime.date(2030, 1, 1), None, WHEN, WHEN, None),
        (b"x", 1, WHEN, 7, WHEN, WHEN, None),
        (b"x", 1, WHEN, None, None, WHEN, None),
        (b"x", 1, WHEN, None, WHEN, 7, None),
        (b"x", 1, WHEN, None, WHEN, WHEN, b"ua"),
    ],
    ids=[
        "null data",
        "null version",
        "null expires",
        "bool version",
        "date",
        "int user id",
        "null created",
        "int updated",
        "bytes device",
    ],
)
def test_columns_that_this_engine_never_writes_are_damage(columns: tuple[Any, ...]) -> None:
    storage = SQLStorage("default", "", 1000)
    assert storage._record("k", b"x", 1, WHEN, "7", WHEN, WHEN, "ua").device == "ua"
    with pytest.raises(DamagedRecord):
        storage._record("k", *columns)


# Fuzz


@pytest.mark.django_db(databases=ALL_SQL)
@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=300),
    expires=st.one_of(
        st.text(max_size=40), st.binary(max_size=20), st.integers(-(2**63), 2**63 - 1)
    ),
    cookie=st.text(max_size=60),
)
def test_stored_bytes_and_cookies_never_break_a_load(
    data: bytes, expires: Any, cookie: str
) -> None:
    with sql_on("default") as store:
        storage = SQLStorage.get()
        other = store()
        other["secret"] = "another session's"
        other.save()
        fuzzed = keys.new_key()
        now = utcnow()
        record = Record(
            keys.storage_id(fuzzed), data, now + datetime.timedelta(hours=1), updated=now
        )
        storage.create(record)
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "UPDATE django_azure_sessions SET expires = %s WHERE key = %s",
                [expires, storage.prefix + record.key],
            )
        for key in (fuzzed, cookie):
            assert store(key).load() == {}
            assert async_to_sync(store(key).aload)() == {}
        storage.page(limit=1000)


@pytest.mark.django_db(databases=ALL_SQL)
def test_the_budget_follows_the_setting() -> None:
    with sql_on("default", TIMEOUT=2.5):
        assert SQLStorage.get().timeout == 2.5
    with override_settings(AZURE_SESSIONS={}):
        assert SQLStorage.get().timeout == 5
