"""RESP2 written and read by the Redis engine itself, on the connection its thread keeps.

redis-py's client, pool and parser cost more Python per command than the rest of a session
load; the engine's commands (``GET``, ``SET``, ``DEL``, ``EVALSHA``) only ever get bulk and
simple strings, integers, nil and errors back, which take a few lines to read. A connection
that does more than speak RESP2 keeps redis-py's reader: Sentinel's, which turns
``READONLY`` into a reconnect, and RESP3 connections, which may receive push messages
(maintenance notifications) between replies.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

RECV_SIZE = 65536


# The length lines of short arguments, built once: formatting one costs more than the rest of
# packing an argument.
_LENGTHS = [b"$%d\r\n" % size for size in range(256)]


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP for commands of bytes, str and int arguments, in one join."""
    out = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if arg.__class__ is not bytes:
                arg = arg.encode() if arg.__class__ is str else b"%d" % arg
            size = len(arg)
            out += (_LENGTHS[size] if size < 256 else b"$%d\r\n" % size, arg, b"\r\n")
    return b"".join(out)


def speaks_plain_resp2(connection: Any) -> bool:
    """Whether ``read_replies`` may read the replies on ``connection``: a RESP2 connection
    with redis-py's own reader, unchanged by a subclass (as Sentinel's is)."""
    import redis.connection

    return (
        type(connection).read_response is redis.connection.AbstractConnection.read_response
        and str(connection.protocol) == "2"
    )


def read_replies(connection: Any, count: int, exceptions: Any) -> list[Any]:
    """The replies to the ``count`` commands just sent on ``connection`` (``exceptions`` is
    ``redis.exceptions``).

    An error reply is returned as redis-py's exception for it (``NoScriptError``...), except
    those redis-py raises as connection errors (``LOADING``...), which are raised. A broken or
    timed-out socket raises redis-py's ``ConnectionError`` or ``TimeoutError``, as anything
    unexpected raises: the caller then drops the connection.

    The connection's health-check deadline is left to redis-py (which clock it is kept in has
    changed between versions): a connection in constant use is sent a ``PING`` once per
    ``health_check_interval``, which redis-py's own reader would have spared it.
    """
    sock = connection._sock
    if sock is None:
        raise exceptions.ConnectionError("Connection closed before the reply.")
    try:
        buffer = _receive(sock, b"")
        position = 0
        replies: list[Any] = []
        while len(replies) < count:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                buffer = _receive(sock, buffer[position:])
                position = 0
                continue
            kind = buffer[position]
            line = buffer[position + 1 : end]
            position = end + 2
            if kind == 36:  # $: a bulk string, or nil
                size = int(line)
                if size < 0:
                    replies.append(None)
                    continue
                if len(buffer) < position + size + 2:
                    buffer = _receive_at_least(sock, buffer[position:], size + 2)
                    position = 0
                replies.append(buffer[position : position + size])
                position += size + 2
            elif kind == 58:  # :
                replies.append(int(line))
            elif kind == 43:  # +
                replies.append(line)
            elif kind == 45:  # -
                error = connection._parser.parse_error(line.decode("utf-8", "replace"))
                if isinstance(error, exceptions.ConnectionError):
                    raise error
                replies.append(error)
            else:
                raise exceptions.InvalidResponse(f"Unexpected reply type {chr(kind)!r}")
        if position != len(buffer):
            raise exceptions.InvalidResponse("More data than the replies awaited")
        return replies
    except ValueError:
        raise exceptions.InvalidResponse("Unreadable reply length") from None
    except TimeoutError:  # the socket's timeout
        raise exceptions.TimeoutError("Timeout reading from Redis") from None
    except OSError as exc:
        raise exceptions.ConnectionError(f"Error while reading from Redis: {exc}") from None


def _receive(sock: socket.socket, pending: bytes) -> bytes:
    data = sock.recv(RECV_SIZE)
    if not data:
        raise OSError("the server closed the connection")
    return pending + data if pending else data


def _receive_at_least(sock: socket.socket, pending: bytes, size: int) -> bytes:
    chunks = [pending]
    have = len(pending)
    while have < size:
        data = sock.recv(max(RECV_SIZE, size - have))
        if not data:
            raise OSError("the server closed the connection")
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)
