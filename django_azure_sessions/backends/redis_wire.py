"""Commands packed by the Redis engine itself, sent on redis-py's connection.

redis-py's client layer (pool checkout, command dispatch, response callbacks) costs more
Python per command than the rest of a session load, so the engine packs its few commands
(``GET``, ``SET``, ``DEL``, ``EVALSHA``) itself and hands them to a connection's public
``send_packed_command``; redis-py (with hiredis, when installed) reads every reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
