"""The storage interface every engine implements: how a store keeps one session record.

Engines know nothing of Django's session rules. The core (``core.session``) hashes keys,
encodes data, computes expiry and resolves conflicts; an engine only stores records.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..exceptions import SessionStoreUnavailable
from . import keys

logger = logging.getLogger("django_azure_sessions")
security_logger = logging.getLogger("django.security.SuspiciousSession")


@dataclasses.dataclass(slots=True)
class Record:
    """One stored session. ``key`` is the storage id (the hashed session key).

    Not frozen: a frozen dataclass is about four times slower to build, and the core sets the
    version of a record it has just built and saved. Otherwise treated as immutable.
    """

    key: str
    data: bytes
    expires: datetime.datetime  # aware, UTC
    user_id: str | None = None
    version: Any = None  # opaque to the core: a row counter, an ETag...
    #: When the session was created. Signing in makes a new session (Django's login() cycles
    #: the key), so for a signed-in session this is the sign-in time.
    created: datetime.datetime | None = None
    #: When the session was last written, by a save or a ``touch()``: its last recorded activity.
    updated: datetime.datetime | None = None
    #: The device the core recorded (user agent, address), as short text the engine keeps as
    #: it is; None when nothing is recorded. See ``core.device``.
    device: str | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of at most ``limit`` records; pass ``next_cursor`` back to get the next page.

    ``next_cursor`` is None on the last page. Otherwise it is opaque: a string for the caller
    to pass back unchanged, meaningful only to the engine that made it. Engines check the
    cursors they are given and raise ValueError on one they did not make. The order of the
    records is the engine's: SQL and Table list in key order, Redis in SCAN order (where a
    record may show on two pages).

    ``damaged`` counts the stored values on this page that could not be read: they are
    skipped (and logged as suspicious), never returned.
    """

    records: Sequence[Record]
    next_cursor: str | None
    damaged: int = 0


def key_cursor(cursor: str | None) -> str | None:
    """The cursor of engines that page in key order: the last stored id listed."""
    if cursor is not None and not keys.is_storage_id(cursor):
        raise ValueError("Not a cursor of this engine.")
    return cursor


class SessionTooLarge(ValueError):
    """The encoded session is larger than the store can keep in one record."""


class DamagedRecord(ValueError):
    """A stored value that is not a record this package wrote (bad header, type, property).

    Engines raise it while parsing and turn it into "no session" with ``Storage.damaged()``.
    """


class Deadline:
    """The time left of one operation's budget (``AZURE_SESSIONS["TIMEOUT"]``)."""

    __slots__ = ("budget", "end")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.end = time.monotonic() + budget

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.end


class Sweep:
    """How one ``clear_expired()`` run goes: when to stop, and whom to tell of progress.

    Engines remove expired records in bounded batches, each committed on its own, so a run
    stopped between batches (``stopped()``) leaves a store that the next run finishes.
    ``removed(n)`` is called after each batch with the number it removed, from any thread (an
    engine may clean partitions side by side). A run is never stopped before its first batch,
    so that every run makes headway, however short its time. Engines given no sweep use
    ``Sweep()``, which never stops.
    """

    __slots__ = ("batches", "count", "halted", "lock", "progress", "stop_at")

    def __init__(
        self,
        max_runtime: float | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        self.stop_at = None if max_runtime is None else time.monotonic() + max_runtime
        self.progress = progress
        self.count = 0
        self.batches = 0
        self.halted = False  # whether stopped() ended the run early
        self.lock = threading.Lock()

    def stopped(self) -> bool:
        """Whether the run is out of time and should stop before its next batch."""
        if self.batches and self.stop_at is not None and time.monotonic() >= self.stop_at:
            self.halted = True
        return self.halted

    def removed(self, count: int) -> None:
        with self.lock:
            self.batches += 1
            self.count += count
            if self.progress is not None and count:
                self.progress(self.count)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Storage(abc.ABC):
    """A session store. Every method is one round trip in the usual case.

    The async twins default to running the sync method in a thread (what Django's own
    async ORM does); engines with a native async client override them.

    A store that does not answer within ``timeout`` seconds (retries included), or cannot be
    reached, makes a method raise ``SessionStoreUnavailable`` (built by ``unavailable()``);
    a stored value that cannot be parsed is reported by ``damaged()`` and read as absent.
    """

    #: The engine's short name, as messages name it ("redis", "table", "sql").
    engine: ClassVar[str] = "session"
    #: The Django settings ``from_settings()`` reads: a change to one rebuilds the storage.
    settings: ClassVar[frozenset[str]] = frozenset({"AZURE_SESSIONS"})
    #: Seconds one operation may take, retries and reconnects included.
    timeout: float = 5.0

    def describe(self) -> str:
        """Where the store is (a host, a table, a database alias), with no secret."""
        return type(self).__name__

    def unavailable(self, operation: str, error: BaseException | str) -> SessionStoreUnavailable:
        """The exception for a failed ``operation``, logged once at WARNING.

        ``error`` is the store's exception (only its type and message, which callers have
        stripped of secrets, are shown) or a reason. Raise the result ``from`` the original.
        """
        if isinstance(error, BaseException):
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            reason = error
        exc = SessionStoreUnavailable(self.engine, self.describe(), f"{operation}: {reason}")
        logger.warning("%s", exc)
        return exc

    def readable(
        self, stored: Iterable[tuple[str, Callable[[], Record | None]]]
    ) -> tuple[list[Record], int]:
        """The records that each ``(key, parse)`` of ``stored`` parses to, and how many were
        damaged (each reported by ``damaged()``): for listings, which skip what is damaged."""
        records: list[Record] = []
        damaged = 0
        for key, parse in stored:
            try:
                record = parse()
            except DamagedRecord as exc:
                self.damaged(key, str(exc))
                damaged += 1
                continue
            if record is not None:
                records.append(record)
        return records, damaged

    def damaged(self, key: str, reason: str) -> None:
        """Log a stored value that cannot be read; the caller then treats it as absent."""
        security_logger.warning(
            "Session record %s… in the %s store (%s) cannot be read, so it counts as no "
            "session: %s",
            key[:12],
            self.engine,
            self.describe(),
            reason,
        )

    @classmethod
    @abc.abstractmethod
    def from_settings(cls) -> Storage:
        """Build the storage described by the current settings."""

    @abc.abstractmethod
    def load(self, key: str) -> Record | None:
        """Return the record, or None when it is absent or expired; with its ``created``,
        ``updated`` and ``device``, which the core's timeouts and device tracking read."""

    @abc.abstractmethod
    def create(self, record: Record) -> Any | None:
        """Insert the record if no record has its key; return its version, or None if taken."""

    @abc.abstractmethod
    def update(self, record: Record, loaded: Record) -> Any | None:
        """Replace ``loaded`` by ``record`` only if the stored version is still ``loaded.version``.

        Return the new version, or None when the record changed or is gone meanwhile.
        """

    def touch(self, record: Record, loaded: Record) -> Any | None:
        """Write only ``record.expires`` and ``record.updated`` (the last activity) over
        ``loaded``, if the stored version is still ``loaded.version``: the data, the user and
        the device stay as stored. A touch never overwrites a newer save, and never brings
        back a deleted record.

        Return the version the next ``update()`` must name (the same one where a touch does
        not change it), or None when the record changed or is gone meanwhile.

        This default rewrites the whole record with ``update()``; engines override it with
        a write of those fields alone.
        """
        return self.update(self._touched(record, loaded), loaded)

    @staticmethod
    def _touched(record: Record, loaded: Record) -> Record:
        return dataclasses.replace(loaded, expires=record.expires, updated=record.updated)

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the record; removing an absent record is not an error."""

    #: What ``clear_expired()`` counts, as ``clearsessions -v 2`` reports it.
    expired_items: ClassVar[str] = "expired sessions"

    @abc.abstractmethod
    def clear_expired(self, sweep: Sweep | None = None) -> int:
        """Remove expired records in bounded batches, each committed on its own; return how
        many were removed. With a ``sweep``, report each batch to ``sweep.removed()`` and stop
        between batches once ``sweep.stopped()``."""

    @abc.abstractmethod
    def count_expired(self) -> int:
        """How many ``expired_items`` a ``clear_expired()`` run would remove now (an estimate
        where the store cannot know without reading every session), removing nothing."""

    @abc.abstractmethod
    def user_records(self, user_id: str) -> list[Record]:
        """Return the live records of one user."""

    @abc.abstractmethod
    def page(self, cursor: str | None = None, limit: int = 100) -> Page:
        """Return up to ``limit`` live records from ``cursor`` (None: the first page; else a
        ``next_cursor`` of this engine), in the engine's order; ValueError on a bad cursor."""

    def queryset(self) -> Any:
        """This store's sessions as a queryset of ``models.Session``, where it is a table that
        a database counts in one query (the admin's counts and chart); None where counting
        means reading every session (the default)."""
        return None

    def records(self, batch_size: int = 500) -> Iterator[Record | None]:
        """Every live record, read ``batch_size`` at a time (in ``page()``'s order; engines that
        can list faster in another order may), and None for each damaged value skipped."""
        cursor = None
        while True:
            page = self.page(cursor, limit=batch_size)
            yield from page.records
            for _ in range(page.damaged):
                yield None
            cursor = page.next_cursor
            if cursor is None:
                return

    async def aload(self, key: str) -> Record | None:
        return await sync_to_async(self.load)(key)

    async def acreate(self, record: Record) -> Any | None:
        return await sync_to_async(self.create)(record)

    async def aupdate(self, record: Record, loaded: Record) -> Any | None:
        return await sync_to_async(self.update)(record, loaded)

    async def atouch(self, record: Record, loaded: Record) -> Any | None:
        if type(self).touch is Storage.touch:  # the default: an update, which may be native
            return await self.aupdate(self._touched(record, loaded), loaded)
        return await sync_to_async(self.touch)(record, loaded)

    async def adelete(self, key: str) -> None:
        await sync_to_async(self.delete)(key)

    async def aclear_expired(self, sweep: Sweep | None = None) -> int:
        return await sync_to_async(self.clear_expired)(sweep)

    async def acount_expired(self) -> int:
        return await sync_to_async(self.count_expired)()

    async def auser_records(self, user_id: str) -> list[Record]:
        return await sync_to_async(self.user_records)(user_id)

    async def apage(self, cursor: str | None = None, limit: int = 100) -> Page:
        return await sync_to_async(self.page)(cursor, limit)

    # One instance per storage class and process, rebuilt when a setting it reads changes.
    _instances: ClassVar[dict[type[Storage], Storage]] = {}

    @classmethod
    def get(cls) -> Storage:
        try:
            return Storage._instances[cls]
        except KeyError:
            instance = Storage._instances[cls] = cls.from_settings()
            return instance

    @classmethod
    def reset(cls, setting: str | None = None) -> None:
        """Forget the built storages that depend on ``setting`` (every one if None)."""
        for kind, instance in list(Storage._instances.items()):
            stale = setting is None or setting in kind.settings
            if stale and Storage._instances.pop(kind, None) is instance:
                instance.close()

    def close(self) -> None:
        """Release connections held by this storage."""

    def warm_up(self, connect: bool = False) -> None:
        """Build now what the first operation would build (clients, pools), so that a
        worker's first request does not pay for it; with ``connect``, open a connection too.
        Without ``connect`` nothing may reach the store: this runs in every management command.
        """


@receiver(setting_changed)
def _reset_storages(*, setting: str, **kwargs: Any) -> None:
    Storage.reset(setting)
