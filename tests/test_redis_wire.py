"""The Redis engine's thin send path on redis-py's connections.

The engine hands its commands to a connection of its thread (``pack_commands``,
``send_packed_command``) and reads the replies with ``read_response``, skipping the client
layer; these tests hold the behaviour that depends on it, on RESP2 and RESP3, against real
servers.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends.redis import UPDATE, SessionStore

from .fixtures.engines import configured
from .fixtures.redis import RedisServer
from .fixtures.redis_stores import PROTOCOLS, saved, storage


@pytest.fixture(params=PROTOCOLS)
def shared(request: pytest.FixtureRequest) -> Iterator[type[SessionStore]]:
    """The engine on the machine's Redis, on each protocol."""
    options = {"protocol": request.param}
    yield from configured("redis", {"REDIS": {"URL": settings.REDIS_URL, "OPTIONS": options}})


@pytest.fixture(params=PROTOCOLS)
def own(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[type[SessionStore]]:
    """The engine on a server of this test, on each protocol, with short timeouts."""
    options = {"socket_timeout": 0.5, "protocol": request.param}
    redis_settings = {"URL": redis_server.url, "OPTIONS": options, "RETRIES": 1}
    yield from configured("redis", {"REDIS": redis_settings, "TIMEOUT": 2})


class TestReplies:
    def test_a_session_of_megabytes_arrives_over_many_reads(self, shared: Any) -> None:
        # Random text compresses to about half: the stored value is still ~1.5 MB.
        blob = secrets.token_hex(1_500_000)
        session = saved(blob=blob)
        assert SessionStore(session.session_key)["blob"] == blob
        assert storage()._thread().connection is not None  # the engine's own send path

    def test_sessions_round_trip_on_either_protocol(self, shared: Any) -> None:
        session = saved(a=1)
        loaded = SessionStore(session.session_key)
        loaded["a"] = 2
        loaded.save()
        assert SessionStore(session.session_key)["a"] == 2
        assert async_to_sync(SessionStore(session.session_key).aload)() == {"a": 2}
        SessionStore(session.session_key).delete()
        assert SessionStore(session.session_key).load() == {}

    def test_noscript_is_recovered(self, own: Any, redis_server: RedisServer) -> None:
        session = saved(a=1)
        with redis_server.client() as admin:
            admin.script_flush()
            session["a"] = 2
            session.save()
            assert admin.script_exists(UPDATE.sha) == [True]
        assert SessionStore(session.session_key)["a"] == 2


class TestBrokenConnections:
    def test_a_stalled_server_times_out_and_a_late_reply_is_never_read(
        self, own: Any, redis_server: RedisServer
    ) -> None:
        first, second = saved(which="first"), saved(which="second")
        assert SessionStore(first.session_key)["which"] == "first"  # the thread's connection
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(SessionStoreUnavailable) as raised:
                SessionStore(first.session_key).load()
            assert isinstance(raised.value.__cause__, redis.TimeoutError)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        # The reply to the timed-out GET arrives now, on a connection that was dropped.
        assert SessionStore(second.session_key)["which"] == "second"
        assert SessionStore(first.session_key)["which"] == "first"

    def test_a_connection_the_server_closed_is_replaced_without_an_error(
        self, own: Any, redis_server: RedisServer
    ) -> None:
        session = saved(a=1)
        assert SessionStore(session.session_key)["a"] == 1
        with redis_server.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        loaded = SessionStore(session.session_key)
        assert loaded["a"] == 1
        loaded["a"] = 2
        loaded.save()
        assert SessionStore(session.session_key)["a"] == 2
