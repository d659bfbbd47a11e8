"""The session contract: what every engine does, sync and async, against a real store.

Each test runs once per engine (the ``engine`` fixture) and once per API flavour (``api``:
Django's sync methods, or their async twins run in a fresh event loop).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone

from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Record, Storage, utcnow

from .fixtures.concurrency import expected_data, write_concurrently

pytestmark = pytest.mark.django_db(databases="__all__")

HAS_ASYNC_SESSION_API = django.VERSION >= (5, 1)


class API:
    """Calls a session method by its sync name, natively or through its ``a``-prefixed twin."""

    def __init__(self, is_async: bool) -> None:
        self.is_async = is_async

    def __call__(self, obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if not self.is_async:
            return getattr(obj, name)(*args, **kwargs)
        method = getattr(obj, "a" + name, None)
        if method is None:
            pytest.skip(f"Django {django.get_version()} has no async SessionBase.a{name}()")
        return async_to_sync(method)(*args, **kwargs)

    def set(self, session: SessionBase, key: str, value: Any) -> None:
        if self.is_async:
            self(session, "set", key, value)
        else:
            session[key] = value


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def api(request: pytest.FixtureRequest) -> API:
    return API(request.param)


def stored(engine: type[Any], session_key: str) -> Record | None:
    storage: Storage = engine.get_storage()
    return storage.load(keys.storage_id(session_key))


def saved_session(engine: type[Any], api: API, **data: Any) -> SessionBase:
    session = engine()
    for key, value in data.items():
        api.set(session, key, value)
    api(session, "save")
    assert session.session_key is not None
    return session  # type: ignore[no-any-return]


# Data and the dict API


def test_a_new_object_is_what_djangos_constructor_makes(engine: type[Any]) -> None:
    """StoreSession sets SessionBase's attributes itself (it imports the serializer once)."""
    key = keys.new_key()
    theirs, ours = vars(SessionBase(key)), vars(engine(key))
    assert theirs.keys() <= ours.keys()
    assert {name: ours[name] for name in theirs} == theirs
    with override_settings(SESSION_SERIALIZER="tests.serializers.DateTimeJSONSerializer"):
        assert engine(key).serializer is SessionBase(key).serializer


def test_new_session_is_empty_and_keyless(engine: type[Any], api: API) -> None:
    session = engine()
    assert session.session_key is None
    assert session.is_empty()
    assert api(session, "get", "missing", "default") == "default"
    assert api(session, "keys") == set() or list(api(session, "keys")) == []


def test_save_then_load_in_another_object(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, cart=[1, 2, 3], name="Ada", nested={"a": {"b": None}})
    assert keys.is_valid(session.session_key)
    loaded = engine(session.session_key)
    assert api(loaded, "get", "cart") == [1, 2, 3]
    assert dict(api(loaded, "items")) == {
        "cart": [1, 2, 3],
        "name": "Ada",
        "nested": {"a": {"b": None}},
    }


def test_dict_api(engine: type[Any], api: API) -> None:
    session = engine()
    api.set(session, "a", 1)
    assert api(session, "setdefault", "a", 2) == 1
    assert api(session, "setdefault", "b", 2) == 2
    api(session, "update", {"c": 3, "d": 4})
    assert api(session, "has_key", "c")
    assert "d" in session
    assert api(session, "pop", "d") == 4
    assert api(session, "pop", "d", "gone") == "gone"
    del session["c"]
    assert sorted(api(session, "keys")) == ["a", "b"]
    assert sorted(api(session, "values")) == [1, 2]
    assert session.modified
    api(session, "save")
    assert dict(engine(session.session_key).items()) == {"a": 1, "b": 2}
    session.clear()
    api(session, "save")
    assert dict(engine(session.session_key).items()) == {}


def test_save_keeps_data_in_the_object(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    api.set(session, "b", 2)
    api(session, "save")
    api(session, "save")
    assert dict(api(session, "items")) == {"a": 1, "b": 2}
    assert dict(engine(session.session_key).items()) == {"a": 1, "b": 2}


# Keys


@pytest.mark.parametrize(
    "bad_key",
    [
        "",
        "short",
        "UPPERCASE0123456789abcdefghijklm",
        "a" * 41,
        "../../etc/passwd0000000000000000",
        "abc def0123456789abcdefghijklmno",
        "ключ0123456789abcdefghijklmnopqr",
        "abcd*0123456789abcdefghijklmnopq",
        "abcdefgh\x00",
        12345678901234567890,
    ],
)
def test_invalid_keys_are_no_session_and_never_queried(
    engine: type[Any], api: API, bad_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    storage = engine.get_storage()
    for name in ("load", "aload", "create", "acreate", "update", "aupdate", "delete", "adelete"):
        original = getattr(storage, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(storage, name, spy)
    session = engine(bad_key)
    assert session.session_key is None
    assert api(session, "get", "anything") is None
    assert api(session, "exists", bad_key) is False
    api(session, "delete", bad_key)
    assert calls == []


def test_valid_key_lengths(engine: type[Any]) -> None:
    assert engine("a" * 40).session_key == "a" * 40
    assert engine("a" * 8).session_key == "a" * 8
    assert engine("a" * 7).session_key is None


def test_unknown_key_loads_nothing_and_creates_nothing(engine: type[Any], api: API) -> None:
    unknown = keys.new_key()
    session = engine(unknown)
    assert api(session, "load") == {}
    assert session.session_key is None
    assert api(engine(), "exists", unknown) is False
    assert stored(engine, unknown) is None


def test_save_after_unknown_key_gets_a_fresh_key(engine: type[Any], api: API) -> None:
    """An attacker-chosen key is never adopted (session fixation)."""
    unknown = keys.new_key()
    session = engine(unknown)
    api.set(session, "a", 1)
    api(session, "save")
    assert session.session_key not in (None, unknown)
    assert stored(engine, unknown) is None
    assert api(engine(session.session_key), "get", "a") == 1


def test_keys_are_stored_hashed(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    storage = engine.get_storage()
    digest = hashlib.sha256(session.session_key.encode()).hexdigest()
    assert storage.load(digest) is not None
    assert storage.load(session.session_key) is None


def test_hashing_can_be_turned_off(engine: type[Any], api: API, settings: Any) -> None:
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "HASH_KEYS": False}
    session = saved_session(engine, api, a=1)
    assert engine.get_storage().load(session.session_key) is not None
    assert api(engine(session.session_key), "get", "a") == 1


def test_create_inserts_once_without_probing(
    engine: type[Any], api: API, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = engine.get_storage()
    calls: list[str] = []
    for name in ("load", "create", "update", "delete"):
        method = "a" + name if api.is_async else name
        original = getattr(storage, method)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(storage, method, spy)
    session = engine()
    api(session, "create")
    assert calls == ["create"]
    calls.clear()
    loaded = engine(session.session_key)
    api(loaded, "get", "x")
    assert calls == ["load"]
    calls.clear()
    api.set(loaded, "x", 1)
    api(loaded, "save")
    assert calls == ["update"]


# Delete, flush, cycle_key


def test_delete(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    key = session.session_key
    api(session, "delete")
    assert api(engine(), "exists", key) is False
    assert dict(engine(key).items()) == {}


def test_delete_by_key_and_of_absent_key(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    api(engine(), "delete", session.session_key)
    assert stored(engine, session.session_key) is None
    api(engine(), "delete", keys.new_key())  # absent: not an error
    api(engine(), "delete")  # no key at all: not an error


def test_flush(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    key = session.session_key
    api(session, "flush")
    assert session.session_key is None
    assert dict(session.items()) == {}
    assert stored(engine, key) is None


def test_cycle_key(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    old = session.session_key
    api(session, "cycle_key")
    assert session.session_key not in (None, old)
    assert stored(engine, old) is None
    assert dict(engine(session.session_key).items()) == {"a": 1}


def test_no_resurrection_of_deleted_session(engine: type[Any], api: API) -> None:
    session = saved_session(engine, api, a=1)
    key = session.session_key
    other = engine(key)
    api(other, "keys")
    api(session, "delete")
    api.set(other, "b", 2)
    with pytest.raises(UpdateError):
        api(other, "save")
    assert stored(engine, key) is None


def test_clear_without_loading_replaces_the_stored_data(engine: type[Any], api: API) -> None:
    """clear() reads nothing; the save that follows stores exactly what the session holds."""
    session = saved_session(engine, api, **{USER_ID_KEY: "1", "a": 1})
    blind = engine(session.session_key)
    blind.clear()
    api.set(blind, "b", 2)
    api(blind, "save")
    assert dict(engine(session.session_key).items()) == {"b": 2}
    api(session, "delete")
    blind.clear()
    with pytest.raises(UpdateError):
        api(blind, "save")


def test_save_of_an_unknown_key_without_loading_creates_a_session(
    engine: type[Any], api: API
) -> None:
    unknown = keys.new_key()
    session = engine(unknown)
    api(session, "save")
    assert session.session_key not in (None, unknown)
    assert stored(engine, session.session_key) is not None
    assert stored(engine, unknown) is None


# No lost updates


def test_concurrent_changes_are_merged(
    engine: type[Any], api: API, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="django_azure_sessions")
    key = saved_session(engine, api, shared=0, doomed=1, kept=1).session_key
    first, second = engine(key), engine(key)
    api(first, "keys")
    api(second, "keys")
    api.set(first, "a", "from first")
    api.set(first, "shared", 1)
    api(first, "save")
    api.set(second, "b", "from second")
    api(second, "pop", "doomed")
    api(second, "save")
    final = dict(engine(key).items())
    assert final == {"shared": 1, "kept": 1, "a": "from first", "b": "from second"}
    assert dict(api(second, "items")) == final
    merged = [r for r in caplog.records if "changed meanwhile" in r.getMessage()]
    assert [r.levelname for r in merged] == ["DEBUG"]
    assert key not in merged[0].getMessage()


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_concurrent_writers_lose_no_update(engine: type[Any]) -> None:
    """16 threads, started together, each set 10 keys of their own in one session."""
    storage = engine.get_storage()
    if storage.engine == "sql" and connections[storage.alias].vendor == "sqlite":
        pytest.skip("SQLite's in-memory test database locks out concurrent writers")
    session = engine()
    session.create()
    final = write_concurrently(engine, session.session_key)
    assert final == expected_data()


def test_same_key_changed_twice_last_writer_wins(engine: type[Any], api: API) -> None:
    key = saved_session(engine, api, color="red").session_key
    first, second = engine(key), engine(key)
    api(first, "keys")
    api(second, "keys")
    api.set(first, "color", "green")
    api(first, "save")
    api.set(second, "color", "blue")
    api(second, "save")
    assert api(engine(key), "get", "color") == "blue"


def test_nested_mutation_counts_as_a_change(engine: type[Any], api: API) -> None:
    key = saved_session(engine, api, cart=[1]).session_key
    first, second = engine(key), engine(key)
    api(first, "get", "cart")
    api(second, "get", "cart")
    api.set(first, "other", True)
    api(first, "save")
    api(second, "get", "cart").append(2)
    second.modified = True
    api(second, "save")
    assert dict(engine(key).items()) == {"cart": [1, 2], "other": True}


# Expiry


def test_default_expiry_is_session_cookie_age(engine: type[Any], api: API) -> None:
    with override_settings(SESSION_COOKIE_AGE=1234):
        session = saved_session(engine, api, a=1)
        assert api(session, "get_expiry_age") == 1234
        record = stored(engine, session.session_key)
    assert record is not None
    expected = utcnow() + datetime.timedelta(seconds=1234)
    assert abs((record.expires - expected).total_seconds()) < 5


@pytest.mark.parametrize("use_tz", [True, False], ids=["aware", "naive"])
@pytest.mark.parametrize(
    "expiry",
    [600, datetime.timedelta(seconds=600), "datetime"],
    ids=["seconds", "timedelta", "datetime"],
)
def test_set_expiry_is_stored(engine: type[Any], api: API, expiry: Any, use_tz: bool) -> None:
    with override_settings(USE_TZ=use_tz):  # USE_TZ=False: Django keeps naive datetimes
        if expiry == "datetime":
            expiry = timezone.now() + datetime.timedelta(seconds=600)
        session = engine()
        api(session, "set_expiry", expiry)
        api(session, "save")
        record = stored(engine, session.session_key)
        assert record is not None
        assert 590 < (record.expires - utcnow()).total_seconds() <= 600
        assert 590 < api(engine(session.session_key), "get_expiry_age") <= 600


def test_expire_at_browser_close(engine: type[Any], api: API) -> None:
    session = engine()
    api(session, "set_expiry", 0)
    api(session, "save")
    loaded = engine(session.session_key)
    assert api(loaded, "get_expire_at_browser_close") is True
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        other = saved_session(engine, api, a=1)
        assert api(engine(other.session_key), "get_expire_at_browser_close") is True
        api(other, "set_expiry", None)
        assert api(other, "get_expire_at_browser_close") is True
    # Stored either way: the record lives for SESSION_COOKIE_AGE.
    record = stored(engine, session.session_key)
    assert record is not None


def test_expired_session_is_never_returned(engine: type[Any], api: API) -> None:
    session = engine()
    api.set(session, "a", 1)
    api(session, "set_expiry", -10)
    api(session, "save")
    key = session.session_key
    assert stored(engine, key) is None
    assert api(engine(), "exists", key) is False
    fresh = engine(key)
    assert api(fresh, "get", "a") is None
    assert fresh.session_key is None


def test_session_expires_in_real_time(engine: type[Any]) -> None:
    session = engine()
    session.set_expiry(1)
    session["a"] = 1
    session.save()
    assert engine(session.session_key).get("a") == 1
    time.sleep(1.2)
    assert engine(session.session_key).get("a") is None
    assert not engine().exists(session.session_key)


def test_clear_expired_keeps_live_sessions(engine: type[Any], api: API) -> None:
    live = [saved_session(engine, api, n=i).session_key for i in range(3)]
    dead = []
    for i in range(3):
        session = engine()
        api.set(session, "n", i)
        api(session, "set_expiry", 1)
        api(session, "save")
        dead.append(session.session_key)
    time.sleep(1.1)
    if api.is_async:
        async_to_sync(engine.aclear_expired)()
    else:
        engine.clear_expired()
    assert all(stored(engine, key) is not None for key in live)
    assert all(stored(engine, key) is None for key in dead)


# Encoding: serializer, secret rotation, corrupted data, Django's own format


def test_session_serializer_is_honoured(engine: type[Any], api: API) -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    with override_settings(SESSION_SERIALIZER="tests.serializers.DateTimeJSONSerializer"):
        session = saved_session(engine, api, when=when)
        assert api(engine(session.session_key), "get", "when") == when


def test_secret_key_fallbacks(engine: type[Any], api: API, caplog: Any) -> None:
    with override_settings(SECRET_KEY="old-secret-key-old-secret-key-old-secret"):
        key = saved_session(engine, api, a=1).session_key
    with override_settings(
        SECRET_KEY="new-secret-key-new-secret-key-new-secret",
        SECRET_KEY_FALLBACKS=["old-secret-key-old-secret-key-old-secret"],
    ):
        assert api(engine(key), "get", "a") == 1
    with (
        override_settings(SECRET_KEY="new-secret-key-new-secret-key-new-secret"),
        caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"),
    ):
        assert api(engine(key), "get", "a") is None
    assert "Session data corrupted" in caplog.text


def _put(engine: type[Any], session_key: str, data: bytes) -> None:
    record = Record(
        key=keys.storage_id(session_key),
        data=data,
        expires=utcnow() + datetime.timedelta(hours=1),
        updated=utcnow(),
    )
    assert engine.get_storage().create(record) is not None


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage", b"~1" + b"\x00" * 40, b"\xff\xfe\x00", b".eJwrSS0u:1t:sig"],
    ids=["empty", "text", "bad-signature", "binary", "django-bad-signature"],
)
def test_corrupted_data_is_logged_and_empty(
    engine: type[Any], api: API, caplog: Any, garbage: bytes
) -> None:
    key = keys.new_key()
    _put(engine, key, garbage)
    with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
        session = engine(key)
        assert dict(api(session, "items")) == {}
    assert "Session data corrupted" in caplog.text
    assert session.session_key == key


def test_data_encoded_by_django_still_loads(engine: type[Any], api: API) -> None:
    """Sites moving from Django's own engines keep their sessions (once copied over)."""
    key = keys.new_key()
    encoded = DjangoDBStore().encode({"_auth_user_id": "7", "cart": [1, 2]})
    _put(engine, key, encoded.encode("ascii"))
    assert dict(api(engine(key), "items")) == {"_auth_user_id": "7", "cart": [1, 2]}


# The per-user index and listing


def test_user_records_follow_the_signed_in_user(engine: type[Any], api: API) -> None:
    storage = engine.get_storage()
    user = f"u{keys.new_key()[:8]}"
    first = saved_session(engine, api, **{USER_ID_KEY: user})
    second = saved_session(engine, api, **{USER_ID_KEY: user})
    saved_session(engine, api, anonymous=True)
    found = {record.key for record in storage.user_records(user)}
    assert found == {keys.storage_id(first.session_key), keys.storage_id(second.session_key)}
    api.set(second, USER_ID_KEY, "someone-else")
    api(second, "save")
    assert {r.key for r in storage.user_records(user)} == {keys.storage_id(first.session_key)}
    api(first, "flush")
    assert storage.user_records(user) == []


def test_page_lists_live_records(engine: type[Any], api: API) -> None:
    """Following the engine's cursors lists every live record and no expired one, whatever
    the order (Redis lists in SCAN order and may list a record twice)."""
    storage = engine.get_storage()
    lister = async_to_sync(storage.apage) if api.is_async else storage.page
    made = {keys.storage_id(saved_session(engine, api, n=i).session_key) for i in range(5)}
    dead = engine()
    api.set(dead, "a", 1)
    api(dead, "set_expiry", -10)
    api(dead, "save")
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = lister(cursor, 2)
        assert len(page.records) <= 2
        assert all(record.expires > utcnow() for record in page.records)
        seen.extend(record.key for record in page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert made <= set(seen)
    assert keys.storage_id(dead.session_key) not in seen


@pytest.mark.parametrize("cursor", ["garbage", "r-1", "r1x", "k", "0" * 63, "\x00", "r0"])
def test_page_refuses_a_cursor_it_did_not_make(engine: type[Any], cursor: str) -> None:
    storage = engine.get_storage()
    with pytest.raises(ValueError, match="Not a cursor of"):
        storage.page(cursor, 2)
    with pytest.raises(ValueError, match="Not a cursor of"):
        async_to_sync(storage.apage)(cursor, 2)


# Through Django's SessionMiddleware


def test_middleware_round_trip(engine: type[Any]) -> None:
    client = Client()
    assert client.get("/set/", {"colour": "teal"}).json() == {"colour": "teal"}
    assert client.get("/get/").json() == {"colour": "teal"}


def test_garbage_cookie_is_just_no_session(engine: type[Any], settings: Any) -> None:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = "'; DROP TABLE sessions; --"
    response = client.get("/get/")
    assert response.json() == {}
    assert client.get("/set/", {"a": "1"}).json() == {"a": "1"}
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert keys.is_valid(cookie)


def test_save_every_request_extends_expiry(engine: type[Any], settings: Any) -> None:
    client = Client()
    client.get("/set/", {"a": "1"})
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    before = stored(engine, key)
    assert before is not None
    time.sleep(1.05)
    client.get("/noop/")
    unchanged = stored(engine, key)
    assert unchanged is not None
    assert unchanged.expires == before.expires
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        client.get("/noop/")
    after = stored(engine, key)
    assert after is not None
    assert after.expires > before.expires


def test_sessions_are_isolated_by_key_prefix(engine: type[Any], api: API, settings: Any) -> None:
    key = saved_session(engine, api, a=1).session_key
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "KEY_PREFIX": "another-site:"}
    assert api(engine(key), "get", "a") is None
