"""The Redis engine's own RESP2 reader (``backends.redis_wire``), against real servers.

The last class feeds the reader over a socket pair, a few bytes at a time: how a reply is cut
between reads cannot be chosen on a real server. Everything else talks to ``redis-server``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.sentinel
from asgiref.sync import async_to_sync
from django.conf import settings

from django_azure_sessions.backends.redis import UPDATE, RedisStorage, SessionStore
from django_azure_sessions.backends.redis_wire import pack, read_replies, speaks_plain_resp2

from .fixtures.redis import RedisServer
from .test_redis import redis_on, saved


def storage() -> RedisStorage:
    return SessionStore.get_storage()  # type: ignore[return-value]


@pytest.fixture
def connection() -> Iterator[Any]:
    """A RESP2 connection to the machine's Redis, as the engine's threads hold them."""
    client = redis.Redis.from_url(settings.REDIS_URL, protocol=2, single_connection_client=True)
    client.ping()
    yield client.connection
    client.close()


def send(connection: Any, *commands: tuple[Any, ...]) -> list[Any]:
    connection.send_packed_command([pack(commands)])
    return read_replies(connection, len(commands), redis.exceptions)


class TestReplies:
    def test_every_kind_of_reply_reads_as_redis_py_reads_it(self, connection: Any) -> None:
        key = f"wire-test:{secrets.token_hex(8)}"
        commands = [
            ("SET", key, b"\x00\r\n$binary\r\n"),  # +OK
            ("GET", key),  # a bulk string holding CRLF
            ("GET", key + ":absent"),  # nil
            ("STRLEN", key),  # an integer
            ("EVALSHA", "0" * 40, 0),  # NOSCRIPT
            ("HGET", key, "field"),  # WRONGTYPE
            ("SET", key + ":empty", b""),
            ("GET", key + ":empty"),  # an empty bulk string
            ("DEL", key, key + ":empty"),
        ]
        ours = send(connection, *commands)
        with redis.Redis.from_url(settings.REDIS_URL, protocol=2) as client:
            client.set(key, b"\x00\r\n$binary\r\n")
            client.set(key + ":empty", b"")
            reference = []
            for command in commands[1:]:
                if command[0] == "SET":
                    continue
                try:
                    reference.append(client.execute_command(*command))
                except redis.ResponseError as error:
                    reference.append(error)
        assert ours[0] == b"OK"
        assert ours[1] == b"\x00\r\n$binary\r\n" == reference[0]
        assert ours[2] is None is reference[1]
        assert ours[3] == 12 == reference[2]
        assert type(ours[4]) is redis.exceptions.NoScriptError is type(reference[3])
        assert type(ours[5]) is redis.ResponseError is type(reference[4])
        assert str(ours[5]) == str(reference[4])
        assert ours[7] == b"" == reference[5]
        assert ours[8] == 2

    def test_a_session_of_megabytes_arrives_over_many_reads(self, redis_engine: Any) -> None:
        # Random text compresses to about half: the stored value is still ~1.5 MB.
        blob = secrets.token_hex(1_500_000)
        session = saved(blob=blob)
        assert SessionStore(session.session_key)["blob"] == blob
        assert storage()._thread().reads_itself

    def test_resp3_connections_keep_redis_pys_reader(self) -> None:
        with redis_on(URL=settings.REDIS_URL, OPTIONS={"protocol": 3}):
            session = saved(a=1)
            loaded = SessionStore(session.session_key)
            loaded["a"] = 2
            loaded.save()
            assert SessionStore(session.session_key)["a"] == 2
            assert not storage()._thread().reads_itself
            assert async_to_sync(SessionStore(session.session_key).aload)() == {"a": 2}

    def test_only_plain_resp2_connections_qualify(self) -> None:
        plain = redis.Connection(protocol=2)
        assert speaks_plain_resp2(plain)
        assert speaks_plain_resp2(redis.SSLConnection(protocol=2))
        assert speaks_plain_resp2(redis.UnixDomainSocketConnection(protocol=2))
        assert not speaks_plain_resp2(redis.Connection(protocol=3))
        pool = redis.sentinel.SentinelConnectionPool(
            "sessions", redis.sentinel.Sentinel([]), protocol=2
        )
        assert not speaks_plain_resp2(pool.make_connection())  # READONLY means reconnect

    def test_noscript_is_recovered_on_the_engines_own_reader(
        self, own: Any, redis_server: RedisServer
    ) -> None:
        session = saved(a=1)
        with redis_server.client() as admin:
            admin.script_flush()
            session["a"] = 2
            session.save()
            assert admin.script_exists(UPDATE.sha) == [True]
        assert SessionStore(session.session_key)["a"] == 2


@pytest.fixture
def own(redis_server: RedisServer) -> Iterator[type[SessionStore]]:
    with redis_on(URL=redis_server.url, OPTIONS={"socket_timeout": 0.5}, RETRIES=1) as store:
        yield store


class TestBrokenConnections:
    def test_a_stalled_server_times_out_and_a_late_reply_is_never_read(
        self, own: Any, redis_server: RedisServer
    ) -> None:
        first, second = saved(which="first"), saved(which="second")
        assert SessionStore(first.session_key)["which"] == "first"  # the thread's connection
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(redis.TimeoutError):
                SessionStore(first.session_key).load()
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


class _Peer:
    """The parts of a redis-py connection the reader uses, on one end of a socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._parser = redis.connection.Connection(protocol=2)._parser


@pytest.fixture
def pair() -> Iterator[tuple[_Peer, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield _Peer(ours), theirs
    ours.close()
    theirs.close()


def trickle(sock: socket.socket, data: bytes, size: int) -> threading.Thread:
    """Write ``data`` ``size`` bytes at a time, pausing so that each write is its own read."""

    def write() -> None:
        for start in range(0, len(data), size):
            sock.sendall(data[start : start + size])
            time.sleep(0.001)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


REPLIES = b"+OK\r\n$5\r\nhe\r\no\r\n$-1\r\n:-42\r\n-NOSCRIPT No matching script.\r\n$0\r\n\r\n"


class TestReaderAcrossReads:
    @pytest.mark.parametrize("size", [1, 2, 3, 7, len(REPLIES)])
    def test_replies_cut_anywhere_read_the_same(
        self, pair: tuple[_Peer, socket.socket], size: int
    ) -> None:
        peer, theirs = pair
        writer = trickle(theirs, REPLIES, size)
        replies = read_replies(peer, 6, redis.exceptions)
        writer.join()
        assert replies[:4] == [b"OK", b"he\r\no", None, -42]
        assert type(replies[4]) is redis.exceptions.NoScriptError
        assert replies[5] == b""

    def test_more_bytes_than_replies_is_an_invalid_response(
        self, pair: tuple[_Peer, socket.socket]
    ) -> None:
        peer, theirs = pair
        theirs.sendall(b":1\r\n:2\r\n")
        with pytest.raises(redis.exceptions.InvalidResponse):
            read_replies(peer, 1, redis.exceptions)

    @pytest.mark.parametrize("data", [b"*1\r\n:1\r\n", b"$x\r\n", b"%0\r\n"])
    def test_replies_the_engine_never_gets_are_invalid(
        self, pair: tuple[_Peer, socket.socket], data: bytes
    ) -> None:
        peer, theirs = pair
        theirs.sendall(data)
        with pytest.raises(redis.exceptions.InvalidResponse):
            read_replies(peer, 1, redis.exceptions)

    def test_a_connection_error_reply_is_raised(self, pair: tuple[_Peer, socket.socket]) -> None:
        peer, theirs = pair
        theirs.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")
        with pytest.raises(redis.exceptions.BusyLoadingError):
            read_replies(peer, 1, redis.exceptions)

    def test_a_closed_socket_is_a_connection_error(
        self, pair: tuple[_Peer, socket.socket]
    ) -> None:
        peer, theirs = pair
        theirs.sendall(b"$10\r\nhalf")
        theirs.close()
        with pytest.raises(redis.ConnectionError, match="closed"):
            read_replies(peer, 1, redis.exceptions)

    def test_silence_is_a_timeout(self, pair: tuple[_Peer, socket.socket]) -> None:
        peer, _ = pair
        peer._sock.settimeout(0.05)
        with pytest.raises(redis.TimeoutError):
            read_replies(peer, 1, redis.exceptions)


def test_pack_writes_what_redis_py_writes() -> None:
    command = ("EVALSHA", UPDATE.sha, 1, "s:{key}", b"\x00" * 8, b"v" * 300, 1_209_600_000)
    packed = b"".join(redis.connection.Connection().pack_command(*command))
    assert pack([command]) == packed
    assert pack([command, ("GET", "k")]) == packed + b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
