"""Redis engine: Azure Cache for Redis, Azure Managed Redis, any Redis, Cluster or Sentinel.

Keys, ``P`` being ``KEY_PREFIX``:

- ``P s:{<id>}``, a string per session: a fixed binary header (version, expiry, how long the
  user index covers it, created, updated, the lengths of the user id and of the device), the
  user id, the device, then the encoded data. It expires natively at the session's expiry.
  Load is one ``GET``; create one ``SET NX PX``; update one script that compares the 8-byte
  version and ``SET``s; touch one script that compares it and writes the expiry and the
  last activity in place, leaving the version as it is.
- ``P u:{<user id>}``, a sorted set per user: the user's session ids, each scored by the
  second from which its index entry may be pruned. It expires with its last member.

A hashed session id (``HASH_KEYS``, 64 hex digits) is written in key names as the 43
base64url characters of its 32 bytes, and in the user index as the 32 bytes: every byte of a
session's keys costs memory on a store that is all in memory.

Only the conditional save of one session must be atomic, so every script and command touches
exactly one key: the engine runs unchanged on Redis Cluster and behind proxies that reject
cross-slot scripts (Azure Managed Redis' Enterprise policy). The braces are hash tags: the
slot of a key is decided by the session id or user id alone, never by the prefix, so sessions
spread over all shards. The user index is written in the same round trip as the save, before
it; it may hold stale ids (sessions deleted or signed in as someone else), which reads verify
against the session itself. An entry is pruned once its score is past, or once a read of the
index or ``clear_expired()`` finds its session gone (expired, evicted, deleted by hand).

Each load, save, touch or delete, and each round trip of a listing, has a budget
(``AZURE_SESSIONS["TIMEOUT"]``): redis-py never retries (its ``Retry`` has 0 retries), the
engine retries connection errors and timeouts with backoff while the budget lasts, then raises
``SessionStoreUnavailable``. Each operation is written once, as steps (``core.steps``) that a
sync and an async driver carry out. A value the engine did not write (bad header, wrong type)
is logged as suspicious and read as no session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import heapq
import itertools
import logging
import os
import re
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

from ..conf import app_settings
from ..core.keys import is_hashed, is_storage_id
from ..core.session import StoreSession
from ..core.steps import Steps, adrive, drive
from ..core.storage import DamagedRecord, Deadline, Page, Record, Storage, Sweep
from ..exceptions import SessionStoreUnavailable
from .redis_connection import (
    ConnectionSpec,
    backoff,
    entra_id_credential_provider,
    import_redis,
    spec_from_settings,
)

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # redis-py depends on async-timeout before Python 3.11.3
    from async_timeout import timeout as _timeout

__all__ = ["RedisStorage", "SessionStore", "entra_id_credential_provider"]

# version, expires, indexed until, created, updated (ms since the epoch), then the lengths of
# the user id and of the device that follow it (NO_USER, NO_DEVICE: None, not "").
HEADER = struct.Struct(">QqqqqHH")
VERSION = struct.Struct(">Q")
TIME = struct.Struct(">q")
EXPIRES_AT, INDEXED_AT, UPDATED_AT = 8, 16, 32  # offsets in the header
NO_TEXT = 0xFFFF  # the length field of a user id or a device that is None
NO_USER = NO_DEVICE = NO_TEXT
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time a datetime holds
SCAN_COUNT = 1000
BATCH = 500


class Script(NamedTuple):
    source: str
    sha: str


def _script(source: str) -> Script:
    return Script(source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 (Redis' id)


# ARGV: the loaded version (8 bytes), the new value, its ttl (ms; <= 0 deletes).
UPDATE = _script("""
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return false end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
""")

# ARGV: the loaded version (8 bytes); the new expiry, or the new expiry and "indexed until"
# (8 or 16 bytes, written from EXPIRES_AT); the last activity (8 bytes); the ttl (ms; <= 0
# deletes). The version stays: a touch conflicts with no save but one that came before it.
TOUCH = _script(f"""
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return false end
if tonumber(ARGV[4]) <= 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('SETRANGE', KEYS[1], {EXPIRES_AT}, ARGV[2])
redis.call('SETRANGE', KEYS[1], {UPDATED_AT}, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
""")

# ARGV: the saved version (8 bytes), "indexed until" set to 0 (8 bytes).
FORGET_INDEX = _script(f"""
if redis.call('GETRANGE', KEYS[1], 0, 7) == ARGV[1] then
  redis.call('SETRANGE', KEYS[1], {INDEXED_AT}, ARGV[2])
end
return 1
""")

# ARGV: session id (see _member), score, now (whole seconds since the epoch: a set of one entry
# then fits a smaller allocation than with milliseconds). Scores only grow; the set lives as
# long as its top. (PTTL, exact where TTL rounds, is -1 for a key without expiry: the first
# write sets it.)
INDEX = _script("""
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not old or tonumber(old) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl * 1000 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
""")


# What a load tells the next save: the version counter, how long the user index covers the
# session, and when it was created (ms). A plain tuple: a NamedTuple costs a Python call.
Version = tuple[int, int, int]


T = TypeVar("T")
# What an operation's steps ask of a driver, with the operation's budget (see _attempts):
# ("send", commands, deadline), one round trip; ("resend", commands, deadline), the same
# after a failure; ("script_load", source, deadline); ("sleep", seconds, deadline). Listings
# also ask for ("scan", cursor, deadline), one SCAN step of the session keys, and walk the
# keys of every node with ("keys", pattern, deadline), an iterator, then ("next", iterator,
# deadline), its next batch ([] at the end).
Request = tuple[str, Any, Deadline]
logger = logging.getLogger("django_azure_sessions")

SCRIPTS = {script.sha: script for script in (UPDATE, TOUCH, FORGET_INDEX, INDEX)}


def _script_call(script: Script, key: str, *args: Any) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, 1, key, *args)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _now_s() -> int:
    """Now in the user index's unit: whole seconds, rounded down."""
    return time.time_ns() // 1_000_000_000


def _score(ms: int) -> int:
    """A user-index score: ``ms`` rounded up to a whole second, so an entry never goes early."""
    return -(-ms // 1000)


def _index_call(index: str, key: str, indexed: int, now: int) -> tuple[Any, ...]:
    """The INDEX script: session ``key``'s entry in ``index`` kept until ``indexed`` (ms)."""
    return _script_call(INDEX, index, _member(key), _score(indexed), now // 1000)


_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_MS = datetime.timedelta(milliseconds=1)
# ms / 1000 gives back the exact millisecond; positional arguments cost half of tz=_UTC.
_from_timestamp = datetime.datetime.fromtimestamp


def _ms(when: datetime.datetime) -> int:
    return (when - _EPOCH) // _MS  # exact, where int(timestamp() * 1000) may round down


def _name(key: str) -> str:
    """Session id ``key`` as its key's name holds it: a hashed id (64 hex digits) as the 43
    base64url characters of its 32 bytes, a key name a third shorter."""
    if len(key) == 64 and is_hashed(key):
        return base64.urlsafe_b64encode(bytes.fromhex(key)).rstrip(b"=").decode()
    return key


def _id_of(name: str) -> str:
    """The session id in a key's name (``_name``'s inverse): 43 characters that ``_name``
    writes for a hashed id are one, since an unhashed id has at most 40. Any other name is
    returned as it is (a key that is not a session's reads as damaged or absent)."""
    if len(name) == 43:
        with contextlib.suppress(ValueError):
            key = base64.urlsafe_b64decode(name + "=").hex()
            if _name(key) == name:
                return key
    return name


def _member(key: str) -> bytes | str:
    """How a user index holds session id ``key``: a hashed id as its 32 bytes, half its hex."""
    return bytes.fromhex(key) if app_settings.HASH_KEYS and is_hashed(key) else key


def _member_id(member: bytes) -> str | None:
    """The session id that user-index ``member`` stands for; None if none can (the entry is
    stale: a development build's, or written under the other ``HASH_KEYS``)."""
    if app_settings.HASH_KEYS:
        return member.hex() if len(member) == 32 else None
    try:
        return member.decode("ascii")
    except UnicodeDecodeError:
        return None


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _parse(key: str, value: Any, now: int) -> Record | None:
    if isinstance(value, Exception):
        if str(value).startswith("WRONGTYPE"):
            raise DamagedRecord("the key holds another type than a string")
        raise value
    if len(value) < HEADER.size:
        raise DamagedRecord(f"{len(value)} bytes, shorter than the header")
    version, expires, indexed, created, updated, user_size, device_size = HEADER.unpack_from(value)
    if not (0 <= expires <= MAX_MS and 0 <= created <= MAX_MS and 0 <= updated <= MAX_MS):
        raise DamagedRecord("a time in the header is out of range")
    if expires <= now:
        return None
    user_end = HEADER.size if user_size == NO_USER else HEADER.size + user_size
    end = user_end if device_size == NO_DEVICE else user_end + device_size
    if end > len(value):
        raise DamagedRecord("the user id's or the device's length runs past the end")
    try:
        user_id = None if user_size == NO_USER else value[HEADER.size : user_end].decode()
        device = None if device_size == NO_DEVICE else value[user_end:end].decode()
    except UnicodeDecodeError:
        raise DamagedRecord("the user id or the device is not UTF-8") from None
    return Record(
        key=key,
        data=value[end:],
        expires=_from_timestamp(expires / 1000, _UTC),
        user_id=user_id,
        version=(version, indexed, created),
        created=_from_timestamp(created / 1000, _UTC),
        updated=_from_timestamp(updated / 1000, _UTC),
        device=device,
    )


def _text(text: str | None, what: str) -> tuple[bytes, int]:
    """``text`` as stored after the header, and its length field."""
    if text is None:
        return b"", NO_TEXT
    stored = text.encode()
    if len(stored) >= NO_TEXT:
        raise ValueError(f"A {what} of 64 KiB or more cannot be stored with a session.")
    return stored, len(stored)


class RedisStorage(Storage):
    """Session records in Redis strings; see the module docstring for the keys."""

    engine = "redis"
    settings = frozenset({"AZURE_SESSIONS", "CACHES"})
    expired_items = "expired user-index entries"  # sessions expire by themselves

    def __init__(self, spec: ConnectionSpec, prefix: str) -> None:
        self.spec = spec
        self.prefix = prefix
        self.timeout = spec.timeout
        self._where = spec.describe()
        self._sessions = prefix + "s:{"
        self._users = prefix + "u:{"
        self._lock = threading.Lock()
        self._client: Any = None
        self._local = threading.local()
        self._async_clients: dict[asyncio.AbstractEventLoop, tuple[Any, AsyncIterator[None]]] = {}
        errors = self._errors = import_redis().exceptions
        self._noscript = errors.NoScriptError
        # BusyLoadingError (a server loading its data) is a ConnectionError: retried too. So are
        # a cluster with no reachable node (RedisClusterException), CLUSTERDOWN, and the end of
        # an async attempt's timeout (the builtin TimeoutError; before Python 3.11,
        # asyncio.TimeoutError, which async-timeout raises).
        self._retried = (
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ClusterError,
            errors.RedisClusterException,
            TimeoutError,
            asyncio.TimeoutError,
        )
        self._refused = errors.AuthenticationError  # misconfiguration: retrying cannot help

    @classmethod
    def from_settings(cls) -> RedisStorage:
        spec = spec_from_settings(app_settings.REDIS, timeout=app_settings.TIMEOUT)
        return cls(spec, app_settings.KEY_PREFIX)

    def describe(self) -> str:
        return self._where

    # Keys and records

    def session_key(self, key: str) -> str:
        return f"{self._sessions}{_name(key)}}}"

    def _stored_id(self, session_key: bytes) -> str:
        """The session id in ``session_key``, a key name a listing found (``session_key``'s
        inverse)."""
        return _id_of(session_key.decode()[len(self._sessions) : -1])

    def user_key(self, user_id: str) -> str:
        return f"{self._users}{user_id}}}"

    def _record(self, key: str, value: Any, now: int) -> Record | None:
        """The record in ``value`` (a GET's reply). A value this engine did not write is
        reported and read as no session."""
        if value is None:
            return None
        try:
            return _parse(key, value, now)
        except DamagedRecord as exc:
            self.damaged(key, str(exc))
            return None

    def _listed(self, ids: Sequence[str], values: list[Any], now: int) -> tuple[list[Record], int]:
        """The live records among a batch's ``values``, and how many values were damaged."""
        return self.readable(
            (key, partial(_parse, key, value, now))
            for key, value in zip(ids, values, strict=True)
            if value is not None
        )

    def _save_commands(
        self, record: Record, loaded: Record | None
    ) -> tuple[list[tuple[Any, ...]], Version]:
        """The commands that save ``record`` (the index first), and its new version."""
        now = _now_ms()
        expires = _ms(record.expires)
        user = record.user_id
        if loaded is None:
            version, indexed = 1, 0
            created = now if record.created is None else _ms(record.created)
        else:
            version, indexed, created = loaded.version
            version += 1
            if loaded.user_id != user:
                indexed = 0
        commands, indexed = self._indexing(user, record.key, expires, indexed, now)
        user_bytes, user_size = _text(user, "user id")
        device_bytes, device_size = _text(record.device, "device")
        updated = now if record.updated is None else _ms(record.updated)
        header = HEADER.pack(version, expires, indexed, created, updated, user_size, device_size)
        value = b"".join((header, user_bytes, device_bytes, record.data))
        key = self.session_key(record.key)
        ttl = expires - now
        if loaded is None:
            commands.append(("SET", key, value, "NX", "PX", max(ttl, 1)))
        else:
            expected = VERSION.pack(loaded.version[0])
            commands.append(_script_call(UPDATE, key, expected, value, ttl))
        return commands, (version, indexed, created)

    def _touch_commands(
        self, record: Record, loaded: Record
    ) -> tuple[list[tuple[Any, ...]], Version]:
        """The commands that write ``record``'s expiry and last activity over ``loaded`` (a
        new index entry first if the session outlives its entry), and the version after."""
        now = _now_ms()
        expires = _ms(record.expires)
        updated = now if record.updated is None else _ms(record.updated)
        version, indexed, created = loaded.version
        commands, new_indexed = self._indexing(loaded.user_id, loaded.key, expires, indexed, now)
        times = TIME.pack(expires)
        if new_indexed != indexed:
            times += TIME.pack(new_indexed)  # "indexed until" follows the expiry
        args = (VERSION.pack(version), times, TIME.pack(updated), expires - now)
        commands.append(_script_call(TOUCH, self.session_key(loaded.key), *args))
        return commands, (version, new_indexed, created)

    def _indexing(
        self, user: str | None, key: str, expires: int, indexed: int, now: int
    ) -> tuple[list[tuple[Any, ...]], int]:
        """The user-index write that a session expiring at ``expires`` needs (none while the
        entry it has covers that), and the new "indexed until"."""
        if user is None or expires <= now or expires <= indexed:
            return [], indexed
        # Cover twice the remaining lifetime: a session saved on every request needs a new
        # index entry about once per lifetime, not once per save.
        indexed = 2 * expires - now
        return [_index_call(self.user_key(user), key, indexed, now)], indexed

    def _failures(
        self, results: list[Any], key: str, version: Version
    ) -> tuple[Exception | None, tuple[Any, ...] | None]:
        """The error of a save, if any, and the repair to run when only its index write failed.

        On Redis Cluster the index may sit on a failing shard while the session's shard took
        the save: the session then must not claim an index entry, so the next save writes it.
        """
        saved = results[-1]
        if isinstance(saved, self._errors.ResponseError) and "WRONGTYPE" in str(saved):
            # Not a string any more: the session this request loaded is gone (a conflict).
            self.damaged(key, "the key holds another type than a string")
            saved = results[-1] = None
        if isinstance(saved, Exception):
            return saved, None
        if len(results) > 1 and isinstance(results[0], Exception):
            if not saved:
                return results[0], None
            args = (VERSION.pack(version[0]), TIME.pack(0))
            return results[0], _script_call(FORGET_INDEX, self.session_key(key), *args)
        return None, None

    # Operations, written once: steps that ``_drive`` and ``_adrive`` carry out (core.steps)

    def _attempts(
        self, operation: str, deadline: Deadline, kind: str, argument: Any
    ) -> Steps[Request, Any]:
        """Ask the driver for ``kind`` until it succeeds, retrying connection errors and
        timeouts with backoff, at most ``RETRIES`` times and never past ``deadline``; then the
        store is unavailable. A command the server refuses (a ResponseError) is its reply.
        A "next" is never retried: an iterator that failed cannot go on."""
        request = (kind, argument, deadline)
        failures = 0
        while True:
            try:
                return (yield request)
            except self._refused as error:
                raise self.unavailable(operation, error) from error
            except self._retried as error:
                failures += 1
                wait = backoff(failures)
                if kind == "next" or failures > self.spec.retries or deadline.remaining() <= wait:
                    raise self.unavailable(operation, error) from error
                logger.debug("Redis %s: retry %d after %s", operation, failures, type(error))
            except self._errors.ResponseError as error:
                if kind != "send":
                    raise
                return [error] * len(argument)
            yield ("sleep", wait, deadline)
            if kind == "send":
                request = ("resend", argument, deadline)

    def _run_steps(
        self, operation: str, deadline: Deadline, commands: list[tuple[Any, ...]]
    ) -> Steps[Request, list[Any]]:
        """Run the commands in one round trip; load a script again if the server lost it."""
        results: list[Any] = yield from self._attempts(operation, deadline, "send", commands)
        lost = [i for i, result in enumerate(results) if isinstance(result, self._noscript)]
        if lost:
            logger.debug("Redis lost its scripts (a restart or a failover): loading them again")
            for sha in {commands[i][1] for i in lost}:
                yield from self._attempts(operation, deadline, "script_load", SCRIPTS[sha].source)
            again = [commands[i] for i in lost]
            retried = yield from self._attempts(operation, deadline, "send", again)
            for i, result in zip(lost, retried, strict=True):
                results[i] = result
        return results

    def _get(self, key: str) -> Steps[Request, list[Any]]:
        command = [("GET", self.session_key(key))]
        return self._attempts("load", Deadline(self.timeout), "send", command)

    def _delete_steps(self, key: str) -> Steps[Request, None]:
        command = [("DEL", self.session_key(key))]
        replies = yield from self._attempts("delete", Deadline(self.timeout), "send", command)
        if isinstance(replies[0], Exception):
            raise replies[0]

    def _save(self, record: Record, loaded: Record | None) -> Steps[Request, Version | None]:
        operation = "create" if loaded is None else "update"
        return self._write_steps(operation, record.key, *self._save_commands(record, loaded))

    def _touch(self, record: Record, loaded: Record) -> Steps[Request, Version | None]:
        return self._write_steps("touch", loaded.key, *self._touch_commands(record, loaded))

    def _write_steps(
        self, operation: str, key: str, commands: list[tuple[Any, ...]], version: Version
    ) -> Steps[Request, Version | None]:
        """Run a save's or a touch's ``commands`` (an index write, then the session's): the
        new ``version``, or None if the session changed or went meanwhile."""
        deadline = Deadline(self.timeout)
        results = yield from self._run_steps(operation, deadline, commands)
        error, repair = self._failures(results, key, version)
        if repair is not None:
            try:
                yield from self._run_steps(operation, deadline, [repair])
            except (self._errors.RedisError, SessionStoreUnavailable) as exc:
                # The next save writes the index entry again: nothing is lost but the entry.
                logger.warning(
                    "Redis: session %s… was saved but its user-index entry was not, and the "
                    "repair failed too (%s)",
                    key[:12],
                    type(exc).__name__,
                )
        if error is not None:
            raise error
        return version if results[-1] else None

    # Listings, written once too: each round trip has the budget and retries of an operation

    def _listing(self, kind: str, argument: Any) -> Steps[Request, Any]:
        return self._attempts("list", Deadline(self.timeout), kind, argument)

    def _list(self, commands: list[tuple[Any, ...]]) -> Steps[Request, list[Any]]:
        """One round trip of a listing; a reply that is an error is raised."""
        replies = yield from self._run_steps("list", Deadline(self.timeout), commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _load_many(
        self, ids: Sequence[str]
    ) -> Steps[Request, tuple[list[Record], int, list[str]]]:
        """The live records of ``ids``, how many of them were damaged, and the ids of no key."""
        records: list[Record] = []
        damaged = 0
        missing: list[str] = []
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            commands = [("GET", self.session_key(key)) for key in batch]
            values = yield from self._run_steps("list", Deadline(self.timeout), commands)
            found, bad = self._listed(batch, values, _now_ms())
            records += found
            damaged += bad
            missing += [key for key, value in zip(batch, values, strict=True) if value is None]
        return records, damaged, missing

    def _clear_expired(self, sweep: Sweep) -> Steps[Request, int]:
        """Prune each user index of its entries past their score, then of those whose session
        is gone (expired, evicted, deleted by hand); count both.

        A batch is up to ``BATCH`` indexes, each pruned for good when its batch ends: a run
        stopped between batches leaves indexes that the next run prunes."""
        pruned = 0
        keys = yield from self._listing("keys", self._index_pattern)
        while not sweep.stopped() and (indexes := (yield from self._listing("next", keys))):
            before = pruned
            now = _now_s()
            commands: list[tuple[Any, ...]] = []
            for index in indexes:
                commands += [("ZREMRANGEBYSCORE", index, "-inf", now), ("ZRANGE", index, 0, -1)]
            replies = yield from self._list(commands)
            pruned += sum(replies[0::2])
            gone: list[tuple[Any, bytes, str | None]] = []
            entries: list[tuple[Any, bytes, str]] = []
            for index, members in zip(indexes, replies[1::2], strict=True):
                for member in members:
                    key = _member_id(member)
                    if key is None:  # no session can have it
                        gone.append((index, member, None))
                    else:
                        entries.append((index, member, key))
            for start in range(0, len(entries), BATCH):
                batch = entries[start : start + BATCH]
                commands = [("EXISTS", self.session_key(key)) for _, _, key in batch]
                found = yield from self._list(commands)
                gone += [entry for entry, exists in zip(batch, found, strict=True) if not exists]
            pruned += yield from self._prune(gone)
            sweep.removed(pruned - before)
        return pruned

    def _count_expired(self) -> Steps[Request, int]:
        """How many user-index entries are past their score: a ``ZCOUNT`` per index."""
        count = 0
        keys = yield from self._listing("keys", self._index_pattern)
        while indexes := (yield from self._listing("next", keys)):
            now = _now_s()
            replies = yield from self._list([("ZCOUNT", index, "-inf", now) for index in indexes])
            count += sum(replies)
        return count

    @property
    def _index_pattern(self) -> str:
        return _glob_escape(self._users) + "*"

    def _prune(self, entries: list[tuple[Any, bytes, str | None]]) -> Steps[Request, int]:
        """Remove the user-index entries ``(index key, member, session id)`` whose session was
        found gone (or that stand for no session id at all), and count them.

        Each session is read again in the round trip that removes its entry: one that appeared
        meanwhile (a sign-in writes its index entry first, then the session) gets its entry
        back, scored as its header says, so that "sign out everywhere" still finds it.
        """
        pruned = 0
        for start in range(0, len(entries), BATCH):
            batch = entries[start : start + BATCH]
            commands: list[tuple[Any, ...]] = [("ZREM", index, m) for index, m, _ in batch]
            commands += [("GET", self.session_key(key)) for _, _, key in batch if key is not None]
            replies = yield from self._run_steps("prune", Deadline(self.timeout), commands)
            now = _now_ms()
            restore = []
            values = iter(replies[len(batch) :])
            for (index, _, key), removed in zip(batch, replies[: len(batch)], strict=True):
                if isinstance(removed, Exception):
                    raise removed
                record = None if key is None else self._record(key, next(values), now)
                if record is None or record.user_id is None or record.version[1] <= now:
                    pruned += removed
                elif removed:
                    restore.append(_index_call(index, record.key, record.version[1], now))
            if restore:
                yield from self._list(restore)
        return pruned

    def _user_records(self, user_id: str) -> Steps[Request, list[Record]]:
        index = self.user_key(user_id)
        [members] = yield from self._list([("ZRANGEBYSCORE", index, f"({_now_s()}", "+inf")])
        ids = {member: _member_id(member) for member in members}
        listed = sorted({key for key in ids.values() if key is not None})
        records, _, missing = yield from self._load_many(listed)
        gone = {*missing, None}
        stale = [(index, member, key) for member, key in ids.items() if key in gone]
        if stale:  # sessions gone (expired, evicted, deleted by hand): repair the index
            try:
                pruned = yield from self._prune(stale)
            except (self._errors.RedisError, SessionStoreUnavailable) as exc:
                logger.warning(
                    "Redis: a user index lists %d sessions that are gone, and removing them "
                    "failed (%s)",
                    len(stale),
                    type(exc).__name__,
                )
            else:
                logger.debug("Redis: %d entries of sessions gone pruned from a user index", pruned)
        return [record for record in records if record.user_id == user_id]

    def _page_steps(self, cursor: str | None, limit: int) -> Steps[Request, Page]:
        if self.spec.mode == "cluster":
            return self._ordered_page(_ordered_cursor(cursor), limit)
        return self._page(_scan_cursor(cursor), limit)

    def _ordered_page(self, after: str | None, limit: int) -> Steps[Request, Page]:
        """Steps of a page in key order (Cluster): each pass scans every session key."""
        records: list[Record] = []
        damaged = 0
        while len(records) < limit:
            wanted = limit - len(records)
            ids: list[str] = []
            keys = yield from self._listing("keys", self._pattern)
            while batch := (yield from self._listing("next", keys)):
                ids = _smallest([ids, [self._stored_id(key) for key in batch]], after, wanted)
            found, bad, _ = yield from self._load_many(ids)
            records.extend(found)
            damaged += bad
            if len(ids) < wanted:
                break
            after = ids[-1]
        return Page(records, "k" + records[-1].key if len(records) == limit else None, damaged)

    def _page(self, start: tuple[int, str | None], limit: int) -> Steps[Request, Page]:
        """Steps of a page from ``start``: a SCAN cursor, and the last id already listed of the
        keys that SCAN step returns (a page can end within one step's keys)."""
        scan, after = start
        records: list[Record] = []
        damaged = 0
        while True:
            following, found = yield from self._listing("scan", scan)
            ids = sorted({self._stored_id(key) for key in found})  # sorted: resumable
            if after is not None:
                ids, after = [i for i in ids if i > after], None
            done = 0
            while done < len(ids) and len(records) < limit:
                batch = ids[done : done + limit - len(records)]
                listed, bad, _ = yield from self._load_many(batch)
                records += listed
                damaged += bad
                done += len(batch)
            if done < len(ids):
                return Page(records, f"r{scan}:{ids[done - 1]}", damaged)
            scan = int(following)
            if scan == 0:
                return Page(records, None, damaged)
            if len(records) >= limit:
                return Page(records, f"r{scan}", damaged)

    @property
    def _pattern(self) -> str:
        return _glob_escape(self._sessions) + "*"

    # Sync API

    @property
    def client(self) -> Any:
        """The process's client, on a pool shared by all threads."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self.spec.sync_client()
        return self._client

    @property
    def thread_client(self) -> Any:
        """This thread's client, for single commands: it keeps one connection of the pool.

        The connection returns to the pool when the thread ends (the client is collected), and
        a process forked with it makes its own.
        """
        return self._thread().client

    def _thread(self) -> threading.local:
        """This thread's client and its connection (None if it has none of its own)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            client = self.spec.thread_client(self.client)
            local.client, local.connection = client, getattr(client, "connection", None)
            local.closed, local.pid = False, os.getpid()
        return local

    def _drive(self, steps: Steps[Request, T]) -> T:
        return drive(steps, self._perform)

    def _perform(self, request: Request) -> Any:
        """Carry out one request of an operation's steps (see ``_attempts``)."""
        kind, argument, deadline = request
        if kind == "send":
            return self._send(argument)
        if kind == "resend":
            return self._resend(argument, deadline.remaining())
        if kind == "sleep":
            return time.sleep(argument)
        if kind == "next":
            return list(itertools.islice(argument, BATCH))
        client = self.client
        if kind == "keys":
            return client.scan_iter(match=argument, count=SCAN_COUNT)
        if kind == "scan":
            return client.scan(argument, match=self._pattern, count=SCAN_COUNT)
        return client.script_load(argument)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands in one round trip on this thread's connection; errors are results."""
        # redis-py's client layer is most of a command's cost in Python: the engine sends its
        # commands and reads the replies on the connection (public API) whenever it has one.
        local = self._thread()
        connection = local.connection
        if connection is None:  # Cluster, or a credential provider: the shared client
            return self._client_send(commands)
        try:
            if local.closed:  # connect() asks Sentinel where the master is now
                connection.connect()
                local.closed = False
            connection.send_packed_command(connection.pack_commands(commands))
            return [self._reply(connection) for _ in commands]
        except BaseException:
            connection.disconnect()  # a half-read reply must never answer the next command
            local.closed = True
            raise

    def _resend(self, commands: list[tuple[Any, ...]], left: float) -> list[Any]:
        """A retry: on a new connection of the pool's kind whose connect and read timeouts are
        what is left of the budget, closed after it (the thread's connection keeps its own)."""
        if self._thread().connection is None:
            return self._client_send(commands)
        pool = self.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        for name in ("socket_timeout", "socket_connect_timeout"):
            if kwargs.get(name) is not None:
                kwargs[name] = min(kwargs[name], left)
        connection = pool.connection_class(**kwargs)
        try:
            connection.connect()
            connection.send_packed_command(connection.pack_commands(commands))
            return [self._reply(connection) for _ in commands]
        finally:
            connection.disconnect()

    def _client_send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if len(commands) == 1:  # on Cluster a pipeline of one retries differently
            return [self.client.execute_command(*commands[0])]
        return self._answers(self._pipeline(self.client, commands).execute(raise_on_error=False))

    @staticmethod
    def _pipeline(client: Any, commands: list[tuple[Any, ...]]) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe

    def _answers(self, results: list[Any]) -> list[Any]:
        """The replies of a pipeline; an error worth a retry (CLUSTERDOWN) is raised."""
        for result in results:
            if isinstance(result, self._retried):
                raise result
        return results

    def _reply(self, connection: Any) -> Any:
        try:
            return connection.read_response()
        except self._errors.ResponseError as error:
            return error

    def load(self, key: str) -> Record | None:
        return self._record(key, self._drive(self._get(key))[0], _now_ms())

    def create(self, record: Record) -> Version | None:
        return self._drive(self._save(record, None))

    def update(self, record: Record, loaded: Record) -> Version | None:
        return self._drive(self._save(record, loaded))

    def touch(self, record: Record, loaded: Record) -> Version | None:
        return self._drive(self._touch(record, loaded))

    def delete(self, key: str) -> None:
        self._drive(self._delete_steps(key))

    def clear_expired(self, sweep: Sweep | None = None) -> int:
        """Data keys expire by themselves: prune the user indexes, and count what was pruned."""
        return self._drive(self._clear_expired(sweep or Sweep()))

    def count_expired(self) -> int:
        """The user-index entries past their score (entries of sessions deleted or evicted
        early, which ``clear_expired()`` also prunes, are not counted)."""
        return self._drive(self._count_expired())

    def user_records(self, user_id: str) -> list[Record]:
        return self._drive(self._user_records(user_id))

    def page(self, cursor: str | None = None, limit: int = 100) -> Page:
        """Records in SCAN order, the cursor carrying Redis' own: a page costs one page of work.

        SCAN may return a key twice, so a session may show on two pages. On Cluster, SCAN is
        per node: there the pages keep key order, and each one scans every session key.
        """
        return self._drive(self._page_steps(cursor, limit))

    def records(self, batch_size: int = 500) -> Iterator[Record | None]:
        """Every live record, in SCAN order: one pass of SCAN, as the pages together make;
        None for each damaged value skipped."""
        keys = self.client.scan_iter(match=self._pattern, count=SCAN_COUNT)
        while batch := list(itertools.islice(keys, batch_size)):
            ids = [self._stored_id(key) for key in batch]
            found, damaged, _ = self._drive(self._load_many(ids))
            yield from found
            yield from itertools.repeat(None, damaged)

    def warm_up(self, connect: bool = False) -> None:
        """Build the process's client and its pool (redis-py connects on first use); with
        ``connect``, this thread's connection too, with a ``PING``.

        A Cluster client is built only with ``connect``: redis-py's ``RedisCluster`` asks a
        node for the slots as it is built. So is a client with a credential provider, which
        may fetch a token (Entra ID) as it is made."""
        if not connect and (self.spec.mode == "cluster" or self.spec.kwargs_have_credentials):
            return
        client = self.client
        if self.spec.mode == "standalone" and not connect:
            # Building a connection object (not connecting it) reads redis-py's version from
            # its package metadata: a few ms the first time in a process, then cached.
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)
        if connect:
            deadline = Deadline(self.timeout)
            [reply] = self._drive(self._attempts("warm up", deadline, "send", [("PING",)]))
            if isinstance(reply, Exception):
                raise self.unavailable("warm up", reply) from reply

    def close(self) -> None:
        client, self._client = self._client, None
        self._local = threading.local()
        self._async_clients = {}  # each is closed by its loop (see _close_on_shutdown)
        if client is not None:
            pool = getattr(client, "connection_pool", None)
            client.close() if pool is None else pool.disconnect()

    # Async API: a client per running event loop, closed when the loop shuts down. Each attempt
    # runs under asyncio.timeout(): on this path no wait outlasts the budget, in any mode.

    async def aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is not None:
            return entry[0]
        for old in list(self._async_clients):  # a snapshot: other threads run other loops
            if old.is_closed():
                self._async_clients.pop(old, None)
        client = self.spec.async_client()
        closer = _close_on_shutdown(client)
        await closer.__anext__()
        self._async_clients[loop] = (client, closer)
        return client

    async def _adrive(self, steps: Steps[Request, T]) -> T:
        return await adrive(steps, self._aperform)

    async def _aperform(self, request: Request) -> Any:
        """``_perform`` on the event loop's client, each attempt bounded by what is left."""
        kind, argument, deadline = request
        if kind == "sleep":
            return await asyncio.sleep(argument)
        if kind == "next":
            return await _next_batch(argument)
        async with _timeout(deadline.remaining()):
            client = await self.aclient()
            if kind == "keys":
                return client.scan_iter(match=argument, count=SCAN_COUNT)
            if kind == "scan":
                return await client.scan(argument, match=self._pattern, count=SCAN_COUNT)
            if kind == "script_load":
                return await client.script_load(argument)
            if len(argument) == 1:
                return [await client.execute_command(*argument[0])]
            pipe = self._pipeline(client, argument)
            return self._answers(await pipe.execute(raise_on_error=False))

    async def aload(self, key: str) -> Record | None:
        return self._record(key, (await self._adrive(self._get(key)))[0], _now_ms())

    async def acreate(self, record: Record) -> Version | None:
        return await self._adrive(self._save(record, None))

    async def aupdate(self, record: Record, loaded: Record) -> Version | None:
        return await self._adrive(self._save(record, loaded))

    async def atouch(self, record: Record, loaded: Record) -> Version | None:
        return await self._adrive(self._touch(record, loaded))

    async def adelete(self, key: str) -> None:
        await self._adrive(self._delete_steps(key))

    async def aclear_expired(self, sweep: Sweep | None = None) -> int:
        return await self._adrive(self._clear_expired(sweep or Sweep()))

    async def acount_expired(self) -> int:
        return await self._adrive(self._count_expired())

    async def auser_records(self, user_id: str) -> list[Record]:
        return await self._adrive(self._user_records(user_id))

    async def apage(self, cursor: str | None = None, limit: int = 100) -> Page:
        return await self._adrive(self._page_steps(cursor, limit))


async def _next_batch(keys: AsyncIterator[Any]) -> list[Any]:
    batch = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= BATCH:
            break
    return batch


_SCAN_CURSOR = re.compile(r"r([1-9][0-9]{0,19})|r(0|[1-9][0-9]{0,19}):(.+)", re.ASCII)


def _scan_cursor(cursor: str | None) -> tuple[int, str | None]:
    """The SCAN cursor and last listed id of a page's cursor ("r<scan>" or "r<scan>:<id>")."""
    if cursor is None:
        return 0, None
    match = _SCAN_CURSOR.fullmatch(cursor)
    if match is None or (match[3] is not None and not is_storage_id(match[3])):
        raise ValueError("Not a cursor of the Redis engine.")
    scan = int(match[1] or match[2])
    if scan >= 2**64:
        raise ValueError("Not a cursor of the Redis engine.")
    return scan, match[3]


def _ordered_cursor(cursor: str | None) -> str | None:
    """The last listed id of a Cluster page's cursor ("k<id>")."""
    if cursor is None:
        return None
    if not cursor.startswith("k") or not is_storage_id(cursor[1:]):
        raise ValueError("Not a cursor of the Redis engine on Cluster.")
    return cursor[1:]


def _smallest(batches: Iterable[list[str]], after: str | None, count: int) -> list[str]:
    """The ``count`` smallest ids greater than ``after``, in order, keeping only that many."""
    best: list[str] = []
    for batch in batches:
        fresh = batch if after is None else [i for i in batch if i > after]
        best = heapq.nsmallest(count, set(best).union(fresh))  # SCAN may repeat a key
    return best


async def _close_on_shutdown(client: Any) -> AsyncIterator[None]:
    # An async generator left suspended is closed by the loop's shutdown_asyncgens(), which
    # asyncio.run() and asgiref's async_to_sync() call: the client's connections are then
    # closed on their own loop instead of leaking once the loop is gone.
    try:
        yield
    finally:
        await client.aclose()


class SessionStore(StoreSession):
    """Sessions in Redis (see ``AZURE_SESSIONS["REDIS"]``)."""

    storage_class = RedisStorage
