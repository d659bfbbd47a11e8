"""The Redis engine when its store fails: stalls, outages and damaged values (issue 9).

Stalls and outages run on ``redis-server`` processes of the tests' own (SIGSTOP, kill) or
behind a proxy that stops forwarding; damage is done to values on the machine's shared
server, under a prefix of the test's own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends.redis import HEADER, NO_DEVICE, NO_USER, SessionStore
from django_azure_sessions.backends.redis_connection import spec_from_settings
from django_azure_sessions.conf import RedisSettings
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Storage
from testproject.demo.apps import DEMO_PASSWORD, DEMO_USERNAME, create_demo_user

from .fixtures.demo import demo_site
from .fixtures.engines import configured
from .fixtures.proxy import StallingProxy, frozen
from .fixtures.redis import RedisServer, delete_prefix, start_cluster, wait_until
from .fixtures.redis_stores import PROTOCOLS, saved, storage

ENGINE = "django_azure_sessions.backends.redis"
SQL_ENGINE = "django_azure_sessions.backends.sql"
SUSPICIOUS = "django.security.SuspiciousSession"


@contextlib.contextmanager
def engine_on(url: str, timeout: float | None = None, **redis_settings: Any) -> Iterator[None]:
    azure_sessions: dict[str, Any] = {"REDIS": {"URL": url, **redis_settings}}
    if timeout is not None:
        azure_sessions["TIMEOUT"] = timeout
    for _ in configured("redis", azure_sessions):
        yield


def stopped(server: RedisServer) -> contextlib.AbstractContextManager[None]:
    """The server frozen (SIGSTOP): connections open, nothing answered."""
    return frozen(server.process)


def took(action: Callable[[], Any], name: str = "load") -> float:
    """Seconds until ``action`` raised SessionStoreUnavailable (for ``update`` if a save)."""
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable) as raised:
        action()
    assert raised.value.engine == "redis"
    assert raised.value.reason.startswith("update" if "save" in name else "load")
    return time.monotonic() - started


def operations(key: str) -> dict[str, Callable[[], Any]]:
    """load() and save() (an update of a loaded session), sync and async."""
    loaded = SessionStore(key)
    assert loaded["a"] == 1  # read before the outage: the save is an update, not a load

    def save() -> None:
        loaded["b"] = 2
        loaded.save()

    sync = {"load": SessionStore(key).load, "save": save}
    if django.VERSION < (5, 1):  # Django's async session API
        return sync
    aloaded = SessionStore(key)
    assert async_to_sync(aloaded.aget)("a") == 1

    async def asave() -> None:
        aloaded["b"] = 3
        await aloaded.asave()

    return {**sync, "aload": async_to_sync(SessionStore(key).aload), "asave": async_to_sync(asave)}


# (a) Stalls: every operation gives up within TIMEOUT + 1 s, and the next one after works


class TestStall:
    @pytest.mark.parametrize("state", ["open", "fresh"])
    def test_default_budget(self, redis_server: RedisServer, state: str) -> None:
        self.stall(redis_server, None, state, {})

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    @pytest.mark.parametrize("state", ["open", "fresh"])
    def test_one_second_budget(self, redis_server: RedisServer, state: str, protocol: int) -> None:
        self.stall(redis_server, 1, state, {"protocol": protocol})

    @staticmethod
    def stall(server: RedisServer, timeout: float | None, state: str, options: Any) -> None:
        budget = 5 if timeout is None else timeout
        with engine_on(server.url, timeout, OPTIONS=options):
            key = saved(a=1).session_key
            assert key is not None
            attempts = operations(key)
            with stopped(server):
                for name, action in attempts.items():
                    if state == "fresh":
                        Storage.reset()  # a new process: no pool, no connection yet
                    assert took(action, name) < budget + 1, name
            assert SessionStore(key)["a"] == 1  # no restart needed
            again = SessionStore(key)
            again["c"] = 1
            again.save()
            assert async_to_sync(SessionStore(key).aload)() == {"a": 1, "c": 1}

    def test_one_event_loop_never_reads_a_late_reply(self, redis_server: RedisServer) -> None:
        with engine_on(redis_server.url, 1):
            first, second = saved(which="first"), saved(which="second")

            async def requests() -> None:  # as under an ASGI server: one loop, one pool
                assert (await SessionStore(first.session_key).aload())["which"] == "first"
                with stopped(redis_server), pytest.raises(SessionStoreUnavailable):
                    await SessionStore(first.session_key).aload()
                for _ in range(3):  # the late reply to the first GET is never an answer
                    assert (await SessionStore(second.session_key).aload())["which"] == "second"

            async_to_sync(requests)()

    def test_a_killed_server_fails_fast_and_comes_back(self, redis_server: RedisServer) -> None:
        with engine_on(redis_server.url, 1):
            key = saved(a=1).session_key
            assert key is not None
            attempts = operations(key)
            redis_server.kill()
            for name, action in attempts.items():
                assert took(action, name) < 2, name
            redis_server.start()
            assert SessionStore(key)["a"] == 1
            assert async_to_sync(SessionStore(key).aload)() == {"a": 1}

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_a_stalled_network(
        self, redis_server: RedisServer, stalling_proxy: type[StallingProxy], protocol: int
    ) -> None:
        proxy = stalling_proxy("127.0.0.1", redis_server.port)
        with engine_on(f"redis://127.0.0.1:{proxy.port}/0", 1, OPTIONS={"protocol": protocol}):
            key = saved(a=1).session_key
            assert key is not None
            attempts = operations(key)
            proxy.stall()
            try:
                for name, action in attempts.items():
                    assert took(action, name) < 2, name
            finally:
                proxy.resume()
            assert SessionStore(key)["a"] == 1

    def test_the_error_names_the_store_and_no_password(self, tmp_path: Any) -> None:
        server = RedisServer(tmp_path, password="s3cr3t-pw").start()
        try:
            with engine_on(f"redis://:wrong-pw@127.0.0.1:{server.port}/3", 1):
                started = time.monotonic()
                with pytest.raises(SessionStoreUnavailable) as raised:
                    SessionStore(keys.new_key()).load()
                assert time.monotonic() - started < 1  # a wrong password is not retried
                message = str(raised.value)
                assert f"127.0.0.1:{server.port}/3" in message
                assert "wrong-pw" not in message
                assert "s3cr3t" not in message
                assert isinstance(raised.value.__cause__, redis.AuthenticationError)
        finally:
            server.stop()


# (b) An outage seen through the demo site


def sign_in_and_fill_the_cart(client: Client) -> str:
    create_demo_user()
    response = client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    assert client.post("/cart/add/coffee/").status_code == 302
    assert client.get("/cart.json").json() == {"cart": {"coffee": 1}}
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["stop", "kill"])
@pytest.mark.parametrize("policy", ["raise", "degrade"])
def test_an_outage_through_the_demo_site(
    redis_server: RedisServer, policy: str, outage: str
) -> None:
    prefix = f"outage-{policy}-{outage}:"
    azure_sessions = {
        "KEY_PREFIX": prefix,
        "REDIS": {"URL": redis_server.url},
        "TIMEOUT": 1,
        "ON_UNAVAILABLE": policy,
    }
    with demo_site(ENGINE, azure_sessions):
        client = Client(raise_request_exception=False)
        cookie = sign_in_and_fill_the_cart(client)
        with redis_server.client() as admin:
            before = {key: admin.get(key) for key in admin.scan_iter(match=prefix + "s:*")}
        assert len(before) == 1

        with contextlib.ExitStack() as outage_lasts:
            if outage == "stop":
                outage_lasts.enter_context(stopped(redis_server))
            else:
                redis_server.kill()
            responses = [
                client.get("/"),
                client.get("/cart.json"),
                client.post("/cart/add/mug/"),
            ]
        if outage == "kill":
            redis_server.start()

        for response in responses:
            assert settings.SESSION_COOKIE_NAME not in response.cookies  # not set, not deleted
            if policy == "raise":
                assert response.status_code == 503
                assert response["Retry-After"] == "1"
            else:
                assert response.status_code in (200, 302)
        if policy == "degrade":
            assert "Signed in as" not in responses[0].content.decode()  # signed out, for now
            assert responses[1].json() == {"cart": {}}
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie

        with redis_server.client() as admin:  # nothing was written during the outage
            after = {key: admin.get(key) for key in admin.scan_iter(match=prefix + "s:*")}
        assert after == before
        assert client.get("/cart.json").json() == {"cart": {"coffee": 1}}
        page = client.get("/")
        assert f"Signed in as <strong>{DEMO_USERNAME}</strong>" in page.content.decode()
        assert client.cookies[settings.SESSION_COOKIE_NAME].value == cookie


# (c) Damaged values: logged as suspicious, read as no session, replaced by the next save


Damage = Callable[[bytes], bytes]


def _flip(offset: int) -> Damage:
    def flip(value: bytes) -> bytes:
        damaged = bytearray(value)
        damaged[offset] ^= 0xFF
        return bytes(damaged)

    return flip


def _with(user: bytes, user_size: int, device: bytes, device_size: int) -> Damage:
    """The value with this user id and device, and these lengths in its header."""

    def rewrite(value: bytes) -> bytes:
        *fields, old_user, old_device = HEADER.unpack_from(value)
        start = HEADER.size
        start += 0 if old_user == NO_USER else old_user
        start += 0 if old_device == NO_DEVICE else old_device
        return HEADER.pack(*fields, user_size, device_size) + user + device + value[start:]

    return rewrite


DAMAGE: dict[str, Callable[[bytes], bytes] | str] = {
    "flip byte 8": _flip(8),  # the expiry's top byte
    "flip byte 9": _flip(9),
    "flip byte 40": _flip(40),  # the user id's length
    "flip byte 41": _flip(41),
    "flip byte 43": _flip(43),  # the device's length
    "truncated": lambda value: value[:20],
    "header only, cut": lambda value: value[: HEADER.size - 1],
    "random bytes": lambda value: random.Random(9).randbytes(len(value)),
    "created out of range": lambda value: value[:24] + struct.pack(">q", -5) + value[32:],
    "bad utf-8 user id": _with(b"\xff\xfe", 2, b"", NO_DEVICE),
    "user id length past the end": _with(b"7", 60_000, b"", NO_DEVICE),
    "bad utf-8 device": _with(b"7", 1, b"\xff\xfe", 2),
    "device length past the end": _with(b"7", 1, b"{}", 60_000),
    "list": "list",
    "hash": "hash",
}


def damage(admin: redis.Redis, key: str, how: Callable[[bytes], bytes] | str) -> None:
    if how == "list":
        admin.delete(key)
        admin.rpush(key, b"x")
    elif how == "hash":
        admin.delete(key)
        admin.hset(key, "x", b"y")
    else:
        assert callable(how)
        value = admin.get(key)
        assert value is not None
        admin.set(key, how(value), keepttl=True)


def suspicious(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == SUSPICIOUS]


@pytest.fixture
def shared_admin() -> Iterator[redis.Redis]:
    admin = redis.Redis.from_url(settings.REDIS_URL)
    yield admin
    admin.close()


@pytest.mark.django_db
@pytest.mark.parametrize("how", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_value_is_no_session(
    how: Callable[[bytes], bytes] | str,
    shared_admin: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sections = {"REDIS": {"URL": settings.REDIS_URL}, "SQL": {"DATABASE": "default"}}
    for _ in configured("redis", sections):
        prefix = settings.AZURE_SESSIONS["KEY_PREFIX"]
        try:
            session = saved(**{USER_ID_KEY: "7", "cart": ["apple"]})
            key = session.session_key
            assert key is not None
            stored_id = keys.storage_id(key)
            damage(shared_admin, storage().session_key(stored_id), how)

            caplog.clear()
            with caplog.at_level(logging.WARNING, logger=SUSPICIOUS):
                assert storage().load(stored_id) is None
                assert SessionStore(key).load() == {}
                assert async_to_sync(SessionStore(key).aload)() == {}
                assert not SessionStore(key).exists(key)
                page = storage().page()
                assert (list(page.records), page.damaged) == ([], 1)
                assert async_to_sync(storage().apage)().damaged == 1
                assert list(storage().records()) == [None]
                assert storage().user_records("7") == []
                assert async_to_sync(storage().auser_records)("7") == []
            assert suspicious(caplog)
            assert all(stored_id[:12] in record.getMessage() for record in suspicious(caplog))

            out = io.StringIO()
            call_command("migratesessions", "--from", ENGINE, "--to", SQL_ENGINE, stdout=out)
            assert "1 expired, empty or unreadable skipped" in out.getvalue()

            # A request with the damaged cookie: no session, so its save makes a new one.
            request = SessionStore(key)
            request["cart"] = ["pear"]
            request.save()
            assert request.session_key not in (None, key)
            assert SessionStore(request.session_key)["cart"] == ["pear"]
        finally:
            delete_prefix(shared_admin, prefix)


def test_an_update_meeting_another_type_is_a_conflict(
    redis_engine: Any, shared_admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    session = saved(a=1)
    assert session.session_key is not None
    stored_id = keys.storage_id(session.session_key)
    loaded = storage().load(stored_id)
    assert loaded is not None
    damage(shared_admin, storage().session_key(stored_id), "list")
    with caplog.at_level(logging.WARNING, logger=SUSPICIOUS):
        assert storage().update(loaded, loaded) is None
        assert async_to_sync(storage().aupdate)(loaded, loaded) is None
    assert suspicious(caplog)


# (d) Properties: whatever is stored or sent, no unhandled error and no other session's data

HEADERS = st.builds(
    lambda fields, tail: HEADER.pack(*fields) + tail,
    st.tuples(
        st.integers(0, 2**64 - 1),
        *[st.integers(-(2**63), 2**63 - 1) for _ in range(4)],
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ),
    st.binary(max_size=64),
)
PROPERTY = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(value=st.one_of(st.binary(max_size=128), HEADERS))
def test_any_stored_bytes_load_as_a_record_or_nothing(
    redis_engine: Any, shared_admin: redis.Redis, value: bytes
) -> None:
    stored_id = keys.storage_id(keys.new_key())
    shared_admin.set(storage().session_key(stored_id), value, ex=60)
    record = storage().load(stored_id)
    assert record is None or record.key == stored_id
    assert isinstance(async_to_sync(SessionStore(keys.new_key()).aload)(), dict)


@pytest.fixture
def secret_session(redis_engine: Any) -> str:
    key = saved(secret="only mine").session_key
    assert key is not None
    return key


def _near(key: str) -> list[str]:
    return [key.upper(), key + "a", key[:-1], " " + key, key + "\x00", key[:31] + "-", key * 2]


@PROPERTY
@given(data=st.data())
def test_any_cookie_loads_no_other_session(secret_session: str, data: st.DataObject) -> None:
    cookie = data.draw(st.one_of(st.text(max_size=80), st.sampled_from(_near(secret_session))))
    loaded = SessionStore(cookie).load()
    assert isinstance(loaded, dict)
    assert "secret" not in loaded


@pytest.mark.parametrize(
    ("section", "described"),
    [
        (
            {"URL": "rediss://:k3y@h.redis.cache.windows.net:6380/2"},
            "h.redis.cache.windows.net:6380/2",
        ),
        ({"URL": "redis://u:k3y@10.0.0.1/0", "CLUSTER": True}, "cluster 10.0.0.1:6379"),
        (
            {"URL": "redis://:k3y@sessions/0", "SENTINELS": [("10.0.0.2", 26379)]},
            "sentinel service mymaster via 10.0.0.2:26379",
        ),
        ({"URL": "unix:///run/redis.sock?password=k3y"}, "unix:/run/redis.sock"),
    ],
)
def test_the_store_is_named_without_its_password(section: dict[str, Any], described: str) -> None:
    spec = spec_from_settings(RedisSettings(**section), timeout=2)
    assert spec.describe() == described
    kwargs = spec.kwargs(asynchronous=False)
    assert kwargs["socket_timeout"] <= 2
    assert kwargs["retry"].get_retries() == 0


def test_a_frozen_cluster_is_an_outage_not_an_error(tmp_path: Any) -> None:
    nodes = start_cluster(tmp_path)
    try:
        with engine_on(f"redis://127.0.0.1:{nodes[0].port}", 1, CLUSTER=True):
            key = saved(a=1).session_key
            assert key is not None
            with contextlib.ExitStack() as frozen:
                for node in nodes:
                    frozen.enter_context(stopped(node))
                assert took(async_to_sync(SessionStore(key).aload)) < 2
                assert took(SessionStore(key).load) < 1 + len(nodes) + 1  # see docs/redis.md
            assert wait_until(lambda: SessionStore(key).load() == {"a": 1})
    finally:
        for node in nodes:
            node.stop()
