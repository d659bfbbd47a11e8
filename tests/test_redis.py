"""The Redis engine: what the contract suite does not cover, against real Redis servers.

The machine's shared server (``settings.REDIS_URL``) is used under unique prefixes and never
flushed; the tests that kill, fail over, flush scripts or need ACLs start their own servers.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.core.checks import run_checks
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path

from django_azure_sessions import SessionStoreUnavailable, checks
from django_azure_sessions.backends import redis as redis_backend
from django_azure_sessions.backends.redis import (
    INDEX,
    TOUCH,
    UPDATE,
    RedisStorage,
    SessionStore,
)
from django_azure_sessions.backends.redis_checks import check_redis
from django_azure_sessions.backends.redis_connection import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    backoff,
    spec_from_settings,
)
from django_azure_sessions.conf import RedisSettings, app_settings
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Record, Sweep, utcnow

from .fixtures.engines import configured, make_record
from .fixtures.redis import RedisServer, free_port, wait_until
from .fixtures.redis_stores import saved, storage
from .fixtures.tls import self_signed_certificate

ENGINE = "django_azure_sessions.backends.redis"


@contextlib.contextmanager
def redis_on(**redis_settings: Any) -> Iterator[type[SessionStore]]:
    """The engine configured with ``AZURE_SESSIONS["REDIS"] = redis_settings``."""
    yield from configured("redis", {"REDIS": redis_settings})


class CommandCounter:
    """Counts the commands a server ran (INFO commandstats), scripts' inner commands included."""

    def __init__(self, server: RedisServer) -> None:
        self.admin = server.client()
        self.before = self.calls()

    def calls(self) -> dict[str, int]:
        stats = self.admin.info("commandstats")
        return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}

    def since(self) -> dict[str, int]:
        after = self.calls()
        changed = {name: n - self.before.get(name, 0) for name, n in after.items()}
        self.before = self.calls()
        return {name: n for name, n in changed.items() if n and name != "info"}


def warm_up() -> None:
    """Load the scripts and open this thread's connection."""
    session = saved(**{USER_ID_KEY: "warm-up"})
    session["a"] = 1
    session.save()


@pytest.fixture
def own(redis_server: RedisServer) -> Iterator[type[SessionStore]]:
    """The engine on a redis-server of this test alone."""
    with redis_on(URL=redis_server.url) as store:
        yield store


# Settings and system checks


def _messages(redis_section: dict[str, Any], **extra: Any) -> list[str]:
    with override_settings(
        SESSION_ENGINE=ENGINE,
        AZURE_SESSIONS={"REDIS": redis_section, **extra},
        # W002 (secrets on error pages) is another check's business; see test_debug.py.
        DEFAULT_EXCEPTION_REPORTER_FILTER="django_azure_sessions.debug.SafeExceptionReporterFilter",
    ):
        return sorted(message.id for message in run_checks() if "azure" in str(message.id))


class TestChecks:
    def test_checks_are_bound_to_the_redis_section(self) -> None:
        assert checks.SECTION_CHECKS["REDIS"] is check_redis
        assert _messages({"URL": "ftp://nowhere"}) == ["django_azure_sessions.E022"]

    def test_checks_run_only_for_the_redis_engine(self) -> None:
        with override_settings(
            SESSION_ENGINE="django_azure_sessions.backends.sql",
            AZURE_SESSIONS={"REDIS": {"URL": "ftp://nowhere"}},
        ):
            assert not [m for m in run_checks() if m.id == "django_azure_sessions.E022"]

    @pytest.mark.parametrize(
        "section",
        [
            {"URL": "redis://127.0.0.1:6379/0"},
            {"URL": "rediss://:key@example.redis.cache.windows.net:6380/0"},
            {"URL": "unix:///var/run/redis.sock?db=1"},
            {"URL": "redis://127.0.0.1:7000", "CLUSTER": True},
            {"SENTINELS": [("10.0.0.1", 26379)], "SENTINEL_SERVICE_NAME": "sessions"},
            {"URL": "redis://127.0.0.1/0", "OPTIONS": {"max_connections": 20}, "RETRIES": 0},
            {
                "URL": "redis://h/0",
                "CREDENTIAL_PROVIDER": f"{ENGINE}.entra_id_credential_provider",
            },
        ],
    )
    def test_valid_settings_pass(self, section: dict[str, Any]) -> None:
        assert _messages(section) == []

    @pytest.mark.parametrize(
        ("section", "expected"),
        [
            ({}, "E021"),
            ({"URL": "redis://a", "CACHE_ALIAS": "default"}, "E034"),
            ({"URL": "http://example.com"}, "E022"),
            ({"URL": 6379}, "E022"),
            ({"URL": "redis://127.0.0.1/0?socket_timeout=soon"}, "E022"),
            ({"CACHE_ALIAS": "nope"}, "E023"),
            ({"CACHE_ALIAS": "default"}, "E024"),  # a LocMemCache
            ({"URL": "redis://127.0.0.1/0", "OPTIONS": "socket_timeout=1"}, "E035"),
            ({"URL": "redis://127.0.0.1/0", "OPTIONS": {"sokcet_timeout": 1}}, "E025"),
            ({"URL": "redis://127.0.0.1/0", "OPTIONS": {"protocol": 5}}, "E025"),
            ({"URL": "redis://127.0.0.1/0", "CLUSTER": "yes"}, "E026"),
            ({"URL": "unix:///tmp/redis.sock", "CLUSTER": True}, "E037"),
            ({"CLUSTER": True, "SENTINELS": [("h", 26379)], "URL": "redis://h"}, "E036"),
            ({"SENTINELS": ["10.0.0.1:26379"]}, "E027"),
            ({"SENTINELS": [("10.0.0.1", 26379)], "SENTINEL_SERVICE_NAME": ""}, "E028"),
            ({"SENTINELS": [("10.0.0.1", 26379)], "SENTINEL_OPTIONS": None}, "E029"),
            ({"URL": "redis://a/0", "CREDENTIAL_PROVIDER": "no.such.module.provider"}, "E030"),
            ({"URL": "redis://a/0", "CREDENTIAL_PROVIDER": "a token"}, "E030"),
            ({"URL": "redis://a/0", "CREDENTIAL_PROVIDER": 42}, "E030"),
            ({"URL": "redis://a/0", "RETRIES": -1}, "E031"),
            ({"URL": "redis://a/0", "RETRIES": 11}, "E031"),
            ({"URL": "redis://a/0", "RETRIES": True}, "E031"),
        ],
    )
    def test_wrong_values_are_errors(self, section: dict[str, Any], expected: str) -> None:
        assert _messages(section) == [f"django_azure_sessions.{expected}"]

    def test_unknown_keys_are_reported_once(self) -> None:
        assert _messages({"URL": "redis://a/0", "PASWORD": "x"}) == ["django_azure_sessions.E020"]

    def test_braces_in_key_prefix_are_an_error(self) -> None:
        messages = _messages({"URL": "redis://a/0"}, KEY_PREFIX="{shop}:")
        assert messages == ["django_azure_sessions.E033"]

    def test_sharded_django_redis_cache_is_refused(self) -> None:
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "sharded": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": ["redis://a:6379/0", "redis://b:6379/0"],
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
            },
        }
        with override_settings(CACHES=caches):
            assert _messages({"CACHE_ALIAS": "sharded"}) == ["django_azure_sessions.E024"]

    @pytest.mark.parametrize(
        ("section", "expected"),
        [
            (
                {"URL": "rediss://h:6380/0", "OPTIONS": {"ssl_cert_reqs": "none"}},
                "W020",
            ),
            (
                {"URL": "rediss://h:6380/0", "OPTIONS": {"ssl_check_hostname": False}},
                "W020",
            ),
            ({"URL": "redis://:k@example.redis.cache.windows.net:6379/0"}, "W021"),
            ({"URL": "redis://:k@example.westeurope.redis.azure.net:10000"}, "W021"),
            ({"URL": "redis://h/0", "OPTIONS": {"health_check_interval": 0}}, "W022"),
            ({"URL": "redis://h/0", "OPTIONS": {"health_check_interval": 600}}, "W022"),
        ],
    )
    def test_risky_values_are_warnings(self, section: dict[str, Any], expected: str) -> None:
        assert _messages(section) == [f"django_azure_sessions.{expected}"]

    def test_module_imports_without_redis_py_and_says_what_to_install(self) -> None:
        script = (
            "import sys, django\n"
            "sys.modules['redis'] = None\n"  # makes `import redis` fail, like a missing package
            "django.setup()\n"
            "from django.test.utils import override_settings\n"
            "from django.core.checks import run_checks\n"
            f"import {ENGINE} as engine\n"
            "with override_settings(SESSION_ENGINE='" + ENGINE + "',\n"
            "        AZURE_SESSIONS={'REDIS': {'URL': 'redis://127.0.0.1/0'}}):\n"
            "    print(sorted(m.id for m in run_checks() if 'azure' in str(m.id)))\n"
            "    try:\n"
            "        engine.SessionStore().save()\n"
            "    except ImportError as exc:\n"
            "        print(exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            cwd=Path(__file__).parent.parent,
            check=True,
        )
        assert result.stdout.splitlines() == [
            "['django_azure_sessions.E032']",
            "The Redis session engine needs redis-py: pip install 'django-azure-sessions[redis]'",
        ]


class TestConnectionDefaults:
    def test_azure_fit_defaults_for_tls(self) -> None:
        spec = spec_from_settings(RedisSettings(URL="rediss://:k@h.redis.cache.windows.net:6380"))
        kwargs = spec.kwargs(asynchronous=False)
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["ssl_check_hostname"] is True
        assert 0 < kwargs["health_check_interval"] < 600
        assert kwargs["socket_connect_timeout"] == kwargs["socket_timeout"] == 5
        assert kwargs["socket_keepalive"] is True
        assert "protocol" not in kwargs  # redis-py's default
        assert (
            spec_from_settings(RedisSettings(URL="redis://h/0", OPTIONS={"protocol": 2})).kwargs(
                asynchronous=False
            )["protocol"]
            == 2
        )
        assert kwargs["retry"].get_retries() == 0  # the engine retries, within its budget

    def test_backoff_is_bounded(self) -> None:
        waits = [backoff(failures) for failures in range(1, 11)]
        assert all(0 < wait <= BACKOFF_CAP for wait in waits)
        assert waits[0] <= BACKOFF_BASE * 2

    def test_options_override_defaults_and_unix_sockets_get_no_tcp_options(self) -> None:
        spec = spec_from_settings(
            RedisSettings(URL="unix:///tmp/r.sock", OPTIONS={"socket_timeout": 0.5})
        )
        kwargs = spec.kwargs(asynchronous=True)
        assert kwargs["socket_timeout"] == 0.5
        assert "socket_connect_timeout" not in kwargs
        assert "ssl_cert_reqs" not in kwargs
        assert isinstance(kwargs["retry"], redis.asyncio.retry.Retry)

    def test_settings_repr_hides_the_access_key(self) -> None:
        with override_settings(
            AZURE_SESSIONS={
                "REDIS": {"URL": "rediss://:s3cr3t@h:6380", "OPTIONS": {"password": "p"}}
            }
        ):
            assert "s3cr3t" not in repr(app_settings.REDIS)
            assert "s3cr3t" not in repr(spec_from_settings(app_settings.REDIS))


# Keys, round trips, expiry, the user index


class TestStorage:
    def test_one_command_to_load_and_one_to_save(
        self, own: type[SessionStore], redis_server: RedisServer
    ) -> None:
        warm_up()
        session = saved(a=1)
        counter = CommandCounter(redis_server)
        loaded = SessionStore(session.session_key)
        loaded["a"] = 2
        assert counter.since() == {"get": 1}
        loaded.save()
        # One EVALSHA; GETRANGE (the version check) and SET run inside it, on the server.
        assert counter.since() == {"evalsha": 1, "getrange": 1, "set": 1}

    def test_a_signed_in_save_writes_the_index_in_the_same_round_trip(
        self, own: type[SessionStore], redis_server: RedisServer
    ) -> None:
        warm_up()
        store = storage()
        counter = CommandCounter(redis_server)
        session = saved(**{USER_ID_KEY: "7"})
        created = counter.since()
        assert created.pop("evalsha") == 1  # the index script, in the same pipeline as:
        assert created.pop("set") == 1  # the session, SET NX
        assert set(created) <= {"zscore", "zadd", "zremrangebyscore", "pttl", "expire"}
        assert [r.key for r in store.user_records("7")] == [keys.storage_id(session.session_key)]
        counter.since()
        # Saved again within the index's cover: the update alone, no index write.
        session["b"] = 2
        session.save()
        assert counter.since() == {"evalsha": 1, "getrange": 1, "set": 1}

    def test_ttl_follows_the_session_expiry(self, redis_engine: type[SessionStore]) -> None:
        session = SessionStore()
        session.set_expiry(300)
        session["a"] = 1
        session.save()
        store = storage()
        key = store.session_key(keys.storage_id(session.session_key))
        assert 295_000 < store.client.pttl(key) <= 300_000
        session.set_expiry(-1)
        session.save()
        assert store.client.exists(key) == 0

    def test_keys_carry_the_prefix_and_a_hash_tag(self, redis_engine: type[SessionStore]) -> None:
        session = saved(**{USER_ID_KEY: "42"})
        prefix = app_settings.KEY_PREFIX
        store = storage()
        found = sorted(k.decode() for k in store.client.scan_iter(match=prefix + "*"))
        digest = hashlib.sha256(session.session_key.encode()).digest()
        name = base64.urlsafe_b64encode(digest).decode().rstrip("=")  # 43 characters, not 64
        assert found == [f"{prefix}s:{{{name}}}", f"{prefix}u:{{42}}"]
        assert store.client.zrange(f"{prefix}u:{{42}}", 0, -1) == [digest]
        assert [r.key for r in store.page().records] == [keys.storage_id(session.session_key)]

    def test_unhashed_ids_are_key_names_as_they_are(
        self, redis_engine: type[SessionStore], settings: Any
    ) -> None:
        settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "HASH_KEYS": False}
        session = saved(**{USER_ID_KEY: "43"})
        store = storage()
        assert store.client.exists(f"{app_settings.KEY_PREFIX}s:{{{session.session_key}}}")
        assert [r.key for r in store.page().records] == [session.session_key]

    def test_create_is_set_if_absent(self, redis_engine: type[SessionStore]) -> None:
        store = storage()
        assert store.create(make_record("k" * 64)) is not None
        assert store.create(make_record("k" * 64)) is None

    def test_update_is_conditional_on_the_version(self, redis_engine: type[SessionStore]) -> None:
        store = storage()
        store.create(make_record("v" * 64))
        loaded = store.load("v" * 64)
        assert loaded is not None
        assert store.update(make_record("v" * 64), loaded) is not None
        assert store.update(make_record("v" * 64), loaded) is None  # stale version
        assert store.update(make_record("w" * 64), loaded) is None  # absent

    def test_clear_expired_prunes_only_the_user_index(
        self, redis_engine: type[SessionStore]
    ) -> None:
        store = storage()
        store.create(make_record("a" * 64, expires_in=0.5, user_id="5"))
        store.create(make_record("b" * 64, expires_in=3600, user_id="5"))
        user_key = store.user_key("5")
        assert store.client.zcard(user_key) == 2
        time.sleep(0.6)
        assert store.load("a" * 64) is None
        # Its entry is scored for twice the remaining lifetime (1 s here), but its session is
        # gone: the entry goes now.
        assert store.clear_expired() == 1
        assert store.clear_expired() == 0
        assert async_to_sync(store.aclear_expired)() == 0
        assert store.client.zrange(user_key, 0, -1) == [bytes.fromhex("b" * 64)]
        assert [r.key for r in store.user_records("5")] == ["b" * 64]
        assert 0 < store.client.pttl(user_key) <= (2 * 3600 + 2) * 1000  # in whole seconds

    def test_user_records_ignore_stale_entries(self, redis_engine: type[SessionStore]) -> None:
        store = storage()
        first = saved(**{USER_ID_KEY: "9"})
        second = saved(**{USER_ID_KEY: "9"})
        second[USER_ID_KEY] = "10"
        second.save()
        first.delete()
        assert store.client.zcard(store.user_key("9")) == 2  # both stale, pruned by score later
        assert store.user_records("9") == []
        assert async_to_sync(store.auser_records)("9") == []
        assert [r.key for r in store.user_records("10")] == [keys.storage_id(second.session_key)]

    def test_page_walks_every_session_in_scan_order(
        self, redis_engine: type[SessionStore], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = storage()
        made = {keys.storage_id(saved(n=n).session_key) for n in range(7)}
        scans: list[int] = []
        scan = store.client.scan
        monkeypatch.setattr(store.client, "scan", lambda c, **kw: scans.append(c) or scan(c, **kw))
        for lister in (store.page, async_to_sync(store.apage)):
            seen: list[str] = []
            cursor = None
            while True:
                page = lister(cursor, 3)
                assert len(page.records) <= 3
                seen += [r.key for r in page.records]
                assert all(r.created is not None and r.updated is not None for r in page.records)
                cursor = page.next_cursor
                if cursor is None:
                    break
                assert cursor.startswith("r")
                if lister == store.page:  # the next page goes on from Redis' cursor
                    scans.clear()
                    page = store.page(cursor, 3)
                    assert scans[0] == int(cursor[1:].partition(":")[0])
            assert made <= set(seen)

    def test_a_page_ends_within_a_scan_step_and_the_next_resumes_there(
        self, redis_engine: type[SessionStore]
    ) -> None:
        store = storage()
        made = {keys.storage_id(saved(n=n).session_key) for n in range(5)}
        first = store.page(None, 1)
        seen = [r.key for r in first.records]
        cursor = first.next_cursor
        while cursor is not None:
            page = store.page(cursor, 1)
            seen += [r.key for r in page.records]
            cursor = page.next_cursor
        assert made <= set(seen)
        assert len(seen) == len(set(seen))  # nothing changed meanwhile: no key twice

    def test_index_failure_makes_the_next_save_rewrite_it(
        self, redis_engine: type[SessionStore]
    ) -> None:
        """If the index write fails but the save succeeds, the session must not claim an index."""
        store = storage()
        session = saved(a=1)
        store.client.set(store.user_key("77"), "not a sorted set")  # WRONGTYPE for the index
        session[USER_ID_KEY] = "77"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            session.save()
        stored = store.load(keys.storage_id(session.session_key))
        assert stored is not None
        assert stored.user_id == "77"
        assert stored.version[1] == 0  # "indexed until": not covered
        store.client.delete(store.user_key("77"))
        fresh = SessionStore(session.session_key)
        fresh["b"] = 2
        fresh.save()
        assert [r.key for r in store.user_records("77")] == [stored.key]


# Touch: the expiry and the last activity written in place, the version kept


def touched(loaded: Record, seconds: float) -> Record:
    """What a touch writes: ``loaded`` expiring ``seconds`` later, active now."""
    return dataclasses.replace(
        loaded, expires=loaded.expires + datetime.timedelta(seconds=seconds), updated=utcnow()
    )


def loaded_session(store: RedisStorage, **data: Any) -> Record:
    session = saved(**data)
    assert session.session_key is not None
    loaded = store.load(keys.storage_id(session.session_key))
    assert loaded is not None
    return loaded


class TestTouch:
    def test_a_touch_is_one_script_in_one_round_trip(
        self, own: type[SessionStore], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        warm_up()
        store = storage()
        loaded = loaded_session(store, **{USER_ID_KEY: "7"})
        assert store.touch(touched(loaded, 60), loaded) == loaded.version  # loads the script
        connection = store._thread().connection
        sends: list[object] = []
        send = connection.send_packed_command
        monkeypatch.setattr(
            connection, "send_packed_command", lambda *a: sends.append(a) or send(*a)
        )
        counter = CommandCounter(redis_server)
        # Within the index's cover: the session's script alone; the version is still loaded's.
        assert store.touch(touched(loaded, 120), loaded) == loaded.version
        assert counter.since() == {"evalsha": 1, "getrange": 1, "setrange": 2, "pexpire": 1}
        assert len(sends) == 1
        # Past the index's cover: the index script first, in the same round trip.
        far = touched(loaded, 30 * 24 * 3600)
        version = store.touch(far, loaded)
        assert version is not None
        assert (version[0], version[2]) == (loaded.version[0], loaded.version[2])
        assert version[1] > loaded.version[1]  # "indexed until" follows the new expiry
        calls = counter.since()
        assert calls.pop("evalsha") == 2
        assert set(calls) <= {
            "getrange",
            "setrange",
            "pexpire",
            "zscore",
            "zadd",
            "zremrangebyscore",
            "pttl",
            "expire",
        }
        assert len(sends) == 2
        with redis_server.client() as admin:
            assert admin.script_exists(TOUCH.sha) == [True]

    def test_a_touch_moves_the_ttl_and_the_activity_and_nothing_else(
        self, redis_engine: type[SessionStore]
    ) -> None:
        store = storage()
        record = make_record("t" * 64, expires_in=60, user_id="7")
        record.device = '{"ua":"curl/8.5"}'
        assert store.create(record) is not None
        loaded = store.load("t" * 64)
        assert loaded is not None
        key = store.session_key("t" * 64)
        before = store.client.get(key)
        assert 55_000 < store.client.pttl(key) <= 60_000
        later = touched(loaded, 30)  # within the index's cover (twice the lifetime: 120 s)
        assert store.touch(later, loaded) == loaded.version
        after = store.client.get(key)
        assert 85_000 < store.client.pttl(key) <= 90_000
        # The version (0-8), "indexed until" (16-24, still covering) and created (24-32) stay;
        # so do the user id, the device and the data after the header.
        assert (after[:8], after[16:32], after[40:]) == (before[:8], before[16:32], before[40:])
        again = store.load("t" * 64)
        assert again is not None
        assert (again.expires, again.data, again.device) == (later.expires, b"x", record.device)
        assert again.updated == later.updated.replace(
            microsecond=later.updated.microsecond // 1000 * 1000
        )
        # A touch to a past expiry ends the session, like a save would.
        assert async_to_sync(store.atouch)(touched(again, -7200), again) is not None
        assert store.client.exists(key) == 0


# The user index repairs itself: entries of sessions gone (expired, evicted, deleted outside
# the package) are pruned when the index is read and by clear_expired()


@pytest.fixture(params=["redis_engine", "redis_cluster_engine"])
def any_redis(request: pytest.FixtureRequest) -> type[SessionStore]:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def signed_in(user_id: str, count: int) -> list[str]:
    return [keys.storage_id(saved(**{USER_ID_KEY: user_id}).session_key) for _ in range(count)]


class TestIndexRepair:
    def test_reading_an_index_prunes_entries_of_sessions_gone(
        self, any_redis: type[SessionStore]
    ) -> None:
        store = storage()
        ids = signed_in("21", 4)
        index = store.user_key("21")
        raw = store.client  # redis-py itself: deletes outside the package
        raw.delete(store.session_key(ids[0]))
        raw.delete(store.session_key(ids[1]))
        assert raw.zcard(index) == 4
        assert sorted(r.key for r in store.user_records("21")) == sorted(ids[2:])
        assert raw.zcard(index) == 2
        raw.delete(store.session_key(ids[2]))
        assert [r.key for r in async_to_sync(store.auser_records)("21")] == [ids[3]]
        assert raw.zcard(index) == 1

    def test_clear_expired_prunes_every_index_of_sessions_gone(
        self, any_redis: type[SessionStore]
    ) -> None:
        store = storage()
        first, second = signed_in("31", 3), signed_in("32", 2)
        raw = store.client
        for stored_id in (first[0], first[1], second[0]):
            raw.delete(store.session_key(stored_id))
        assert store.clear_expired() == 3
        assert raw.zrange(store.user_key("31"), 0, -1) == [bytes.fromhex(first[2])]
        assert raw.zrange(store.user_key("32"), 0, -1) == [bytes.fromhex(second[1])]
        assert async_to_sync(store.aclear_expired)() == 0
        raw.delete(store.session_key(second[1]))
        assert async_to_sync(store.aclear_expired)() == 1
        assert raw.exists(store.user_key("32")) == 0  # its last member gone, so is the set
        assert [r.key for r in store.user_records("31")] == [first[2]]

    def test_an_entry_whose_session_appears_meanwhile_is_put_back(
        self, redis_engine: type[SessionStore]
    ) -> None:
        """A sign-in writes its index entry, then its session: a reader that found no session
        between the two removes the entry, reads the session again and puts the entry back."""
        store = storage()
        [stored_id] = signed_in("41", 1)
        index = store.user_key("41")
        member = bytes.fromhex(stored_id)
        score = store.client.zscore(index, member)
        assert store._drive(store._prune([(index, member, stored_id)])) == 0  # as if found gone
        assert store.client.zscore(index, member) == score
        assert [r.key for r in store.user_records("41")] == [stored_id]

    def test_the_index_holds_hashed_ids_as_bytes_and_prunes_any_other_member(
        self, any_redis: type[SessionStore]
    ) -> None:
        """A hashed id is held as its 32 bytes. Members of any other shape (64 hex digits, as
        development builds wrote them, whose sessions live under names this build never
        reads; bytes no id can be) stand for no session: reading the index prunes them, and
        so does clearsessions."""
        store = storage()
        ids = signed_in("51", 2)
        index = store.user_key("51")
        raw = store.client
        assert sorted(raw.zrange(index, 0, -1)) == sorted(bytes.fromhex(i) for i in ids)
        score = raw.zscore(index, bytes.fromhex(ids[0]))
        raw.zadd(index, {ids[1].encode(): score, b"\xff not an id": score})
        assert sorted(r.key for r in store.user_records("51")) == sorted(ids)
        assert sorted(raw.zrange(index, 0, -1)) == sorted(bytes.fromhex(i) for i in ids)
        raw.zadd(index, {ids[1].encode(): score, b"\xff not an id": score})
        assert store.clear_expired() == 2
        assert sorted(raw.zrange(index, 0, -1)) == sorted(bytes.fromhex(i) for i in ids)

    def test_a_key_name_that_is_not_one_the_engine_writes_keeps_its_text(
        self, redis_engine: type[SessionStore]
    ) -> None:
        """43 characters that decode, but not to what the engine writes for that digest
        (``x`` * 43, standard base64's ``+``): listed as the name itself, so reported as
        damaged rather than read under another key."""
        from django_azure_sessions.backends.redis import _id_of, _name

        digest = "fb" * 32  # its name has both of base64url's own characters
        name = _name(digest)
        assert "-" in name
        assert "_" in name
        assert _id_of(name) == digest
        standard = name.replace("-", "+").replace("_", "/")
        for other in ("x" * 43, "a" * 43, standard):
            assert _id_of(other) == other

    def test_unhashed_ids_stay_text(self, redis_engine: type[SessionStore], settings: Any) -> None:
        settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "HASH_KEYS": False}
        store = storage()
        session = saved(**{USER_ID_KEY: "52"})
        assert store.client.zrange(store.user_key("52"), 0, -1) == [session.session_key.encode()]
        assert [r.key for r in store.user_records("52")] == [session.session_key]


# clearsessions' sweep: progress after each batch of indexes, a stop between batches, resumed
# by the next run; and the dry run's count


class StopAfter(Sweep):
    """A sweep that runs out of time once ``batches`` batches have reported."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.limit = batches
        self.counts: list[int] = []

    def removed(self, count: int) -> None:
        super().removed(count)
        self.counts.append(count)

    def stopped(self) -> bool:
        return len(self.counts) >= self.limit


class TestSweep:
    @pytest.fixture
    def gone(self, any_redis: type[SessionStore], monkeypatch: pytest.MonkeyPatch) -> int:
        """Five users, each with a live session and one deleted by hand; two indexes a batch."""
        monkeypatch.setattr(redis_backend, "BATCH", 2)
        store = storage()
        for user in range(5):
            ids = signed_in(f"5{user}", 2)
            store.client.delete(store.session_key(ids[0]))
        return 5

    @pytest.mark.parametrize("native", [True, False], ids=["sync", "async"])
    def test_a_stopped_sweep_is_finished_by_the_next(self, gone: int, native: bool) -> None:
        store = storage()
        clear = store.clear_expired if native else async_to_sync(store.aclear_expired)
        first = StopAfter(1)
        assert clear(first) == 2
        assert first.counts == [2]
        assert first.count == 2
        second = StopAfter(99)
        assert clear(second) == gone - 2
        # The scan starts again: the batch pruned already reports 0, and every batch reports.
        assert sorted(second.counts) == [0, 1, 2]
        assert clear(None) == 0
        for user in range(5):
            assert len(store.user_records(f"5{user}")) == 1

    def test_progress_is_told_the_running_total(self, gone: int) -> None:
        totals: list[int] = []
        assert storage().clear_expired(Sweep(progress=totals.append)) == gone
        assert totals == [2, 4, 5]

    def test_a_sweep_out_of_time_still_does_its_first_batch(self, gone: int) -> None:
        store = storage()
        sweep = Sweep(max_runtime=0)
        assert store.clear_expired(sweep) == 2
        assert sweep.halted
        assert store.clear_expired() == gone - 2

    def test_count_expired_counts_entries_past_their_score_and_removes_none(
        self, any_redis: type[SessionStore]
    ) -> None:
        store = storage()
        store.create(make_record("c" * 64, expires_in=0.2, user_id="61"))
        store.create(make_record("d" * 64, expires_in=3600, user_id="61"))
        store.create(make_record("e" * 64, expires_in=0.2, user_id="62"))
        store.create(make_record("f" * 64, expires_in=3600, user_id="62"))
        assert store.count_expired() == 0
        # Past twice the short lifetime, in whole seconds: both short entries are past their score.
        time.sleep(1.5)
        assert store.count_expired() == 2
        assert async_to_sync(store.acount_expired)() == 2
        assert store.client.zcard(store.user_key("61")) == 2
        assert store.clear_expired() == 2
        assert store.count_expired() == 0


# Scripts: loaded once, called by SHA, recovered after SCRIPT FLUSH


class TestScripts:
    def test_noscript_after_script_flush_is_recovered(
        self, own: type[SessionStore], redis_server: RedisServer
    ) -> None:
        session = saved(**{USER_ID_KEY: "3"})
        session["a"] = 1
        session.save()
        with redis_server.client() as admin:
            assert admin.script_exists(UPDATE.sha, INDEX.sha) == [True, True]
            admin.script_flush()
            assert admin.script_exists(UPDATE.sha, INDEX.sha) == [False, False]
            session["a"] = 2
            session.save()  # one script, alone
            assert admin.script_exists(UPDATE.sha, INDEX.sha) == [True, False]
            other = saved(**{USER_ID_KEY: "3"})  # the index script (lost) with SET NX
            assert admin.script_exists(INDEX.sha) == [True]
            admin.script_flush()
            other[USER_ID_KEY] = "4"
            other.save()  # the index and update scripts in one round trip, both lost
            assert admin.script_exists(UPDATE.sha, INDEX.sha) == [True, True]
            admin.script_flush()
            session["a"] = 3
            async_to_sync(session.asave)()
        assert SessionStore(session.session_key)["a"] == 3
        assert {r.key for r in storage().user_records("4")} == {keys.storage_id(other.session_key)}


# Connections: one pool per process and configuration; async clients per event loop


class TestConnections:
    def test_one_storage_and_pool_per_configuration(self, redis_engine: type[Any]) -> None:
        store = storage()
        assert SessionStore.get_storage() is store
        saved(a=1)
        client = store.client
        pool = client.connection_pool
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(storage().thread_client))
        worker.start()
        worker.join()
        assert results[0].connection_pool is pool
        assert results[0] is not store.thread_client
        with override_settings(AZURE_SESSIONS={"REDIS": {"URL": "redis://127.0.0.1:1/0"}}):
            assert SessionStore.get_storage() is not store

    def test_threads_return_their_connection_when_they_end(
        self, own: type[SessionStore], redis_server: RedisServer
    ) -> None:
        """Servers that start a thread per request (runserver) must not leak connections."""
        key = saved(a=1).session_key

        def request() -> None:
            assert SessionStore(key)["a"] == 1

        for _ in range(20):
            worker = threading.Thread(target=request)
            worker.start()
            worker.join()
        with redis_server.client() as admin:
            assert len(admin.client_list()) <= 3  # this thread's, a pooled one, the admin

    def test_async_clients_follow_the_event_loop_and_close_with_it(
        self, own: type[SessionStore], redis_server: RedisServer
    ) -> None:
        key = saved(a=1).session_key

        async def load() -> Any:
            return await SessionStore(key).aload()

        def connections() -> int:
            with redis_server.client() as admin:
                return len(admin.client_list()) - 1  # less the admin's own

        baseline = connections()
        for _ in range(5):  # each call runs in a new event loop, closed after it
            assert async_to_sync(load)() == {"a": 1}
        wait_until(lambda: connections() == baseline, what="async connections to close")
        assert len(storage()._async_clients) == 1  # the closed loops were forgotten

    def test_a_forked_process_makes_its_own_connection(self, own: type[SessionStore]) -> None:
        session = saved(a=1)
        assert SessionStore(session.session_key)["a"] == 1  # this thread holds a connection
        with warnings.catch_warnings():  # Python 3.12 warns of fork() with threads around
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover (the child reports through its exit code)
            code = 1
            try:
                child = SessionStore(session.session_key)
                child["b"] = 2
                child.save()
                code = 0 if SessionStore(session.session_key)["a"] == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert dict(SessionStore(session.session_key).items()) == {"a": 1, "b": 2}


# A store outage is an error, never "no session"


class TestOutage:
    def test_unreachable_store_raises_within_bounded_retries(
        self, redis_server: RedisServer
    ) -> None:
        with redis_on(URL=redis_server.url, RETRIES=3):
            key = saved(a=1).session_key
            loaded = loaded_session(storage(), **{USER_ID_KEY: "7"})
            redis_server.kill()
            for attempt in (
                lambda: SessionStore(key).load(),
                lambda: SessionStore(key).exists(key),
                lambda: async_to_sync(SessionStore(key).aload)(),
                lambda: saved(b=1),
                lambda: storage().touch(touched(loaded, 60), loaded),
                lambda: async_to_sync(storage().atouch)(touched(loaded, 60), loaded),
                lambda: storage().user_records("7"),
                lambda: async_to_sync(storage().aclear_expired)(),
            ):
                started = time.monotonic()
                with pytest.raises(SessionStoreUnavailable):
                    attempt()
                assert time.monotonic() - started < 3 * BACKOFF_CAP + 1


# Killing redis-server mid-request, through Django's SessionMiddleware

KILL: list[Callable[[], None]] = []


def login_view(request: HttpRequest) -> HttpResponse:
    request.session[USER_ID_KEY] = "7"
    request.session["cart"] = ["apple"]
    return JsonResponse(dict(request.session.items()))


def add_view(request: HttpRequest) -> HttpResponse:
    cart = request.session["cart"]
    request.session["cart"] = [*cart, request.GET["item"]]
    while KILL:  # the store dies after the session was read, before it is saved
        KILL.pop()()
    return JsonResponse(dict(request.session.items()))


def cart_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(request.session.items()))


urlpatterns = [
    path("login/", login_view),
    path("add/", add_view),
    path("cart/", cart_view),
]


@pytest.mark.urls(__name__)
class TestServerKilledMidRequest:
    def test_request_fails_clearly_and_the_next_one_works(
        self, own: type[SessionStore], redis_server: RedisServer, settings: Any
    ) -> None:
        client = Client(raise_request_exception=False)
        assert client.get("/login/").json() == {USER_ID_KEY: "7", "cart": ["apple"]}
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        KILL.append(redis_server.kill)

        response = client.get("/add/", {"item": "pear"})

        assert response.status_code == 503
        assert settings.SESSION_COOKIE_NAME not in response.cookies  # nothing set or cleared
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie
        other = Client()  # the store's error, not "no session": no new cookie either
        other.cookies[settings.SESSION_COOKIE_NAME] = cookie
        response = other.get("/cart/")
        assert response.status_code == 503
        assert settings.SESSION_COOKIE_NAME not in response.cookies

        redis_server.start()
        assert client.get("/cart/").json() == {USER_ID_KEY: "7", "cart": ["apple"]}
        assert client.get("/add/", {"item": "plum"}).json()["cart"] == ["apple", "plum"]
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie
        assert [r.key for r in storage().user_records("7")] == [keys.storage_id(cookie)]

    def test_store_down_before_the_session_is_read(
        self, own: type[SessionStore], redis_server: RedisServer, settings: Any
    ) -> None:
        client = Client(raise_request_exception=False)
        client.get("/login/")
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        redis_server.kill()
        response = client.get("/cart/")
        assert response.status_code == 503
        assert settings.SESSION_COOKIE_NAME not in response.cookies
        redis_server.start()
        assert client.get("/cart/").json() == {USER_ID_KEY: "7", "cart": ["apple"]}
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie


# TLS, as Azure requires it (rediss://, port 6380 or 10000)


@dataclasses.dataclass
class TLSServer:
    server: RedisServer
    port: int  # where it speaks TLS
    ca: Path  # its self-signed certificate

    @property
    def url(self) -> str:
        return f"rediss://:tls-secret@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="class")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    """A redis-server that also listens with TLS, on a certificate no system trusts."""
    directory = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed_certificate(directory)
    port = free_port()
    server = RedisServer(
        directory,
        "--tls-port", str(port),
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
        password="tls-secret",
    )  # fmt: skip
    server.start()
    yield TLSServer(server, port, cert)
    server.stop()


class TestTLS:
    def test_sessions_round_trip_over_tls(self, tls_server: TLSServer) -> None:
        with redis_on(URL=tls_server.url, OPTIONS={"ssl_ca_certs": str(tls_server.ca)}) as store:
            session = store()
            session[USER_ID_KEY] = "5"
            session.save()
            assert store(session.session_key).load() == {USER_ID_KEY: "5"}
            assert async_to_sync(store(session.session_key).aload)() == {USER_ID_KEY: "5"}
            assert [r.user_id for r in store.get_storage().user_records("5")] == ["5"]
            with tls_server.server.client() as plain:  # the same server, seen without TLS
                assert plain.exists(storage().session_key(session._storage_id()))

    def test_an_untrusted_certificate_is_refused(self, tls_server: TLSServer) -> None:
        # No ssl_ca_certs: the system's trust store, and verification is on by default.
        with redis_on(URL=tls_server.url, RETRIES=0) as store:
            pool = storage().client.connection_pool
            assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
            assert pool.connection_kwargs["ssl_check_hostname"] is True
            for load in (store(keys.new_key()).load, async_to_sync(store(keys.new_key()).aload)):
                with pytest.raises(SessionStoreUnavailable, match="CERTIFICATE_VERIFY") as e:
                    load()
                assert "tls-secret" not in str(e.value)

    def test_a_certificate_for_another_host_is_refused(self, tls_server: TLSServer) -> None:
        # Trusted, but issued to 127.0.0.1, not to "localhost".
        url = tls_server.url.replace("127.0.0.1", "localhost")
        with (
            redis_on(URL=url, RETRIES=0, OPTIONS={"ssl_ca_certs": str(tls_server.ca)}) as store,
            pytest.raises(SessionStoreUnavailable, match=r"match|mismatch"),
        ):
            store(keys.new_key()).load()


# CACHE_ALIAS: the connection settings of a django-redis cache, reused


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password="cache-pass").start()
    yield server
    server.stop()


class TestCacheAlias:
    def test_django_redis_cache_settings_are_reused(
        self, password_server: RedisServer, settings: Any
    ) -> None:
        caches = {
            **settings.CACHES,
            "shared": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{password_server.port}/2",
                "KEY_PREFIX": "cache",
                "OPTIONS": {
                    "PASSWORD": "cache-pass",
                    "SOCKET_TIMEOUT": 2,
                    "CONNECTION_POOL_KWARGS": {"max_connections": 7},
                },
            },
        }
        with override_settings(CACHES=caches), redis_on(CACHE_ALIAS="shared"):
            assert _messages({"CACHE_ALIAS": "shared"}) == []
            from django.core.cache import caches as django_caches

            django_caches["shared"].set("k", "cached")
            session = saved(a=1)
            assert SessionStore(session.session_key)["a"] == 1
            kwargs = storage().client.connection_pool.connection_kwargs
            assert kwargs["password"] == "cache-pass"
            assert kwargs["db"] == 2
            assert kwargs["socket_timeout"] == 2
            assert storage().client.connection_pool.max_connections == 7
            assert django_caches["shared"].get("k") == "cached"
            with password_server.client(password="cache-pass", db=2) as admin:
                assert admin.exists(storage().session_key(keys.storage_id(session.session_key)))

    def test_djangos_own_redis_cache_is_reused_too(
        self, password_server: RedisServer, settings: Any
    ) -> None:
        caches = {
            **settings.CACHES,
            "builtin": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://:cache-pass@127.0.0.1:{password_server.port}/1",
                "OPTIONS": {"socket_timeout": 3},
            },
        }
        with override_settings(CACHES=caches), redis_on(CACHE_ALIAS="builtin"):
            session = saved(a=1)
            assert SessionStore(session.session_key)["a"] == 1
            assert storage().client.connection_pool.connection_kwargs["socket_timeout"] == 3

    def test_django_redis_sentinel_cache_becomes_a_sentinel_connection(
        self, settings: Any
    ) -> None:
        caches = {
            **settings.CACHES,
            "sentinel": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://sessions-master/3",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "SENTINELS": [("10.0.0.5", 26379)],
                    "SENTINEL_KWARGS": {"password": "s"},
                    "PASSWORD": "p",
                },
            },
        }
        with override_settings(CACHES=caches):
            spec = spec_from_settings(RedisSettings(CACHE_ALIAS="sentinel"))
        assert (spec.mode, spec.service_name, list(spec.sentinels)) == (
            "sentinel",
            "sessions-master",
            [("10.0.0.5", 26379)],
        )
        kwargs = spec.kwargs(asynchronous=False)
        assert (kwargs["db"], kwargs["password"]) == (3, "p")
        assert "host" not in kwargs
        assert spec.sentinel_options == {"password": "s"}


# Sentinel: a failover to the replica loses no session


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    master = RedisServer(tmp_path, "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer(tmp_path, "--replicaof", "127.0.0.1", str(master.port)).start()
    sentinel = RedisServer(
        tmp_path,
        "--sentinel",
        config=(
            f"sentinel monitor sessions 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds sessions 500\n"
            "sentinel failover-timeout sessions 5000\n"
        ),
    ).start()
    try:
        wait_until(replica.replica_synced, what="the replica to sync")
        yield master, replica, sentinel
    finally:
        for server in (sentinel, replica, master):
            server.stop()


class TestSentinel:
    def test_failover_to_the_replica_loses_no_session(
        self, sentinel_group: tuple[RedisServer, RedisServer, RedisServer]
    ) -> None:
        master, replica, sentinel = sentinel_group
        with redis_on(SENTINELS=[("127.0.0.1", sentinel.port)], SENTINEL_SERVICE_NAME="sessions"):
            session = saved(**{USER_ID_KEY: "8", "cart": ["apple"]})
            session["cart"] = ["apple", "pear"]
            session.save()
            stored_key = storage().session_key(keys.storage_id(session.session_key))
            with master.client() as admin:  # replication is asynchronous: let it catch up
                assert admin.wait(1, 5000) == 1
            with replica.client() as reader:
                assert reader.exists(stored_key)

            master.kill()
            with redis.Redis(port=sentinel.port) as watcher:
                # The raw reply: redis-py 7.0's parser of this command fails (a keyword bug).
                ask = ("SENTINEL", "get-master-addr-by-name", "sessions")
                wait_until(
                    lambda: int(watcher.execute_command(*ask)[1]) == replica.port,
                    timeout=30,
                    what="the sentinel to promote the replica",
                )

            # Same process, same storage and pools: the sentinel's new master serves it.
            after = SessionStore(session.session_key)
            assert after["cart"] == ["apple", "pear"]
            after["cart"] = [*after["cart"], "plum"]
            after.save()  # the new master never saw the scripts: NOSCRIPT, recovered
            assert async_to_sync(SessionStore(session.session_key).aload)()["cart"] == [
                "apple",
                "pear",
                "plum",
            ]
            assert [r.key for r in storage().user_records("8")] == [
                keys.storage_id(session.session_key)
            ]


# Redis Cluster: hash tags, slots, one key per command


class TestCluster:
    def test_pages_keep_key_order_on_the_cluster(self, redis_cluster_engine: type[Any]) -> None:
        store = storage()
        made = sorted(keys.storage_id(saved(n=n).session_key) for n in range(8))
        for lister in (store.page, async_to_sync(store.apage)):
            seen: list[str] = []
            cursor = None
            while True:
                page = lister(cursor, 3)
                assert len(page.records) <= 3
                seen += [r.key for r in page.records]
                cursor = page.next_cursor
                if cursor is None:
                    break
                assert cursor == "k" + seen[-1]
            assert seen == made
            with pytest.raises(ValueError, match="Not a cursor of"):
                lister("r12", 3)

    def test_sessions_spread_over_the_masters_by_their_id(
        self, redis_cluster_engine: type[Any], redis_cluster: list[RedisServer]
    ) -> None:
        store = storage()
        sessions = [saved(**{USER_ID_KEY: "21", "n": n}) for n in range(30)]
        per_node = []
        pattern = app_settings.KEY_PREFIX + "s:*"
        for node in redis_cluster:
            with node.client() as client:
                per_node.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
        assert sum(per_node) == 30
        assert all(count > 0 for count in per_node)
        with redis_cluster[0].client() as client:

            def slot(key: str) -> int:
                return int(client.execute_command("CLUSTER", "KEYSLOT", key))

            for session in sessions[:5]:
                key = store.session_key(keys.storage_id(session.session_key))
                tag = key[key.index("{") + 1 : -1]  # the id's 43 base64url characters
                assert slot(key) == slot(tag)
            assert slot(store.user_key("21")) == slot("21")
        # The user's index lives on one node, their sessions on all three.
        assert {r.key for r in store.user_records("21")} == {
            keys.storage_id(s.session_key) for s in sessions
        }
        assert len(store.page(None, 100).records) == 30

    def test_every_command_touches_one_key(
        self, redis_cluster_engine: type[Any], redis_cluster: list[RedisServer]
    ) -> None:
        """No CROSSSLOT is possible: each script declares exactly one key."""
        session = saved(**{USER_ID_KEY: "31"})
        session[USER_ID_KEY] = "32"  # index script on the user's slot, update on the session's
        session.save()
        async_to_sync(session.asave)()
        store = storage()
        assert [r.key for r in store.user_records("32")] == [keys.storage_id(session.session_key)]
        for node in redis_cluster:
            with node.client() as client:
                assert "errorstat_CROSSSLOT" not in client.info("errorstats")


# Microsoft Entra ID: the token is the password, renewed before it expires


class FakeIdentityProvider:
    """Stands in for Microsoft Entra ID, which cannot be reached from here.

    Each token it issues is a fresh random password, valid for ``lifetime`` seconds, which it
    also registers as a password of the ACL user ``oid`` on the test's own redis-server (what
    Azure does when it trusts a token). The renewal logic under test is redis-py's and
    redis-entraid's, driven through this engine's CREDENTIAL_PROVIDER hook.
    """

    def __init__(self, server: RedisServer, oid: str, lifetime: float) -> None:
        self.server = server
        self.oid = oid
        self.lifetime = lifetime
        self.issued: list[tuple[str, float, float]] = []  # token, issued at, expires at

    def request_token(self, force_refresh: bool = False) -> Any:
        from redis.auth.token import SimpleToken

        now = time.time()
        token = f"token-{len(self.issued)}-{keys.new_key()}"
        with self.server.client() as admin:
            admin.acl_setuser(
                self.oid, enabled=True, passwords=[f"+{token}"], keys=["*"], commands=["+@all"]
            )
        self.issued.append((token, now, now + self.lifetime))
        return SimpleToken(token, (now + self.lifetime) * 1000, now * 1000, {"oid": self.oid})


class TestEntraId:
    def test_token_is_renewed_before_it_expires(self, redis_server: RedisServer) -> None:
        from redis.auth.token_manager import RetryPolicy, TokenManagerConfig
        from redis_entraid.cred_provider import EntraIdCredentialsProvider

        idp = FakeIdentityProvider(redis_server, "sessions-app", lifetime=2.0)
        providers: list[Any] = []

        def provider() -> Any:
            made = EntraIdCredentialsProvider(
                idp, TokenManagerConfig(0.5, 0, 1000, RetryPolicy(3, 10))
            )
            providers.append(made)
            return made

        with redis_server.client() as admin:
            admin.config_set("requirepass", "not-a-token")  # only tokens get in
        redis_server.password = "not-a-token"
        try:
            with redis_on(URL=redis_server.url, CREDENTIAL_PROVIDER=provider):
                session = saved(a=1)
                assert storage().thread_client is storage().client  # no per-thread clients
                first_token, _, first_expiry = idp.issued[0]
                wait_until(lambda: len(idp.issued) >= 2, timeout=5, what="a renewed token")
                assert idp.issued[1][1] < first_expiry  # renewed before the first expired
                # The first token expires: Redis refuses it, and drops every connection.
                with redis_server.client() as admin:
                    admin.acl_setuser("sessions-app", passwords=[f"-{first_token}"])
                    admin.client_kill_filter(user="sessions-app")
                assert SessionStore(session.session_key)["a"] == 1  # logs in with the new token
                session["a"] = 2
                session.save()
                assert SessionStore(session.session_key)["a"] == 2
                assert len(providers) == 1
        finally:
            for made in providers:
                made._token_mgr.stop()
