"""Table engine: sessions in Azure Table Storage or Azure Cosmos DB for Table (Azurite locally).

One table holds three kinds of entity (``P`` is the escaped ``KEY_PREFIX``, ``S`` the shard of
a storage id: its first hex digit and a quarter of the second, so 64 partitions):

=============  ====================  ===================================================
PartitionKey   RowKey                entity
=============  ====================  ===================================================
``P.s.S``      ``s.<id>``            the session: Expires, UserId, Created, Updated,
                                     Device and the data in binary properties of 64 KiB
                                     each
``P.s.S``      ``x.<end>.<id>``      its expiry index entry: the session expires before
                                     ``<end>`` (Unix seconds, a whole hour)
``P.u.<user>`` ``<id>``              the per-user index entry
=============  ====================  ===================================================

A session and its expiry entry share a partition, so they are written and removed together,
atomically, in one entity-group transaction; the entry moves only when the expiry crosses
into another hour, so most saves are a plain conditional replace, and most touches (the
expiry and the last activity alone) a conditional merge of those two properties.
``clear_expired`` reads the due entries of each partition (a range of RowKeys), never the
sessions themselves. Then it checks every per-user entry against its session and removes
those whose session is gone, as ``user_records`` does for the entries it reads: in each
partition it reads the user and expiry of the sessions the entries name, one by one where
they are few, else the range of sessions they span (a request per 1,000 sessions, which
costs more than reading one by one only where anonymous sessions outnumber signed-in ones a
thousand to one).

``Updated`` (the last activity) is a property rather than the entity's Timestamp: the core
decides that time (``Record.updated``) and reads back what it wrote, a copy between stores
keeps it, and the service sets Timestamp by its own clock (Cosmos DB to the second). Entities
written without it read their Timestamp instead.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import hashlib
import json
import logging
import re
import string
from collections.abc import Iterable
from functools import partial
from typing import Any, NamedTuple, TypeVar

from ..conf import app_settings
from ..core import keys
from ..core.session import StoreSession
from ..core.storage import (
    DamagedRecord,
    Deadline,
    Page,
    Record,
    SessionTooLarge,
    Storage,
    Sweep,
    key_cursor,
    utcnow,
)
from ..secrets import redact
from .table_client import (
    Call,
    Connection,
    Runner,
    Steps,
    TableStorageError,
    connection_from_settings,
    import_tables,
)

__all__ = ["SessionStore", "TableStorage", "TableStorageError"]

BUCKET_SECONDS = 3600
CHUNK = 64 * 1024  # the largest binary property
MAX_ENTITY = 1024 * 1024  # Azure Storage's entity limit (Cosmos DB allows 2 MB)
MAX_DATA = (MAX_ENTITY - 2048) // 4 * 3  # about: keys and properties take about 1-2 KB
BATCH = 100  # entities in one transaction
WORKERS = 8  # partitions cleaned at once
# Seconds before a user entry whose session names another user, or expired, counts as stale:
# a sign-in writes the entry just before the session, a request may save just after expiry.
STALE_USER_ENTRY = 300
# Cleanup reads the sessions that user entries name one by one, or, where more than this many
# fall in one partition, the whole range of sessions they span, PAGE at a time.
RANGE_READ = 8
PAGE = 1000
# Times cleanup sends a request again when its connection is dropped (azure-core does not
# resend a transaction, a POST).
RESENDS = 5


def _reliable(call: Call) -> Call:
    """``call``, sent again up to ``RESENDS`` times on a dropped connection (the runner does
    it): for cleanup's reads. Its removals are resent by ``_remove``, which must know it."""
    return call._replace(resend=RESENDS)


_HEX = "0123456789abcdef"
_QUARTERS = "0123"
_RAW_SHARDS = string.digits + string.ascii_lowercase
_SESSION_END = "s.~"  # "~" sorts after every character of a storage id
_CHUNK = re.compile(r"Data[0-9]*")

T = TypeVar("T")

logger = logging.getLogger("django_azure_sessions")


class Version(NamedTuple):
    """What ``Record.version`` holds: the ETag, and the creation time a replace must keep."""

    etag: str
    created: datetime.datetime


def shard(key: str) -> str:
    """The partition of a storage id; ids in key order are in partition order."""
    if len(key) == 64:  # a SHA-256: 16 * 4 partitions
        return key[0] + _QUARTERS[_HEX.index(key[1]) // 4]
    return key[0]


def all_shards(hashed: bool) -> list[str]:
    if hashed:
        return [first + quarter for first in _HEX for quarter in _QUARTERS]
    return list(_RAW_SHARDS)


def _escape(text: str) -> str:
    """``text`` in key-safe characters, ``.`` free for separators."""
    return "".join(
        char if char.isascii() and char.isalnum() else "".join(f"_{b:02X}" for b in char.encode())
        for char in text
    )


def _namespace(text: str) -> str:
    escaped = _escape(text)
    return escaped if len(escaped) <= 200 else "__" + hashlib.sha256(text.encode()).hexdigest()


def bucket_end(expires: datetime.datetime) -> int:
    """The end of the hour ``expires`` falls in, in Unix seconds: later than ``expires``."""
    seconds = calendar.timegm(expires.utctimetuple())
    return max(0, (seconds // BUCKET_SECONDS + 1) * BUCKET_SECONDS)


def _chunk_name(index: int) -> str:
    return f"Data{index}" if index else "Data"


def _expires(entity: Any) -> datetime.datetime:
    expires = entity.get("Expires")
    if not isinstance(expires, datetime.datetime) or expires.tzinfo is None:
        found = "missing" if expires is None else f"of type {type(expires).__name__}"
        raise DamagedRecord(f"Expires is {found}")
    return expires


def _plain(value: datetime.datetime) -> datetime.datetime:
    return datetime.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=datetime.timezone.utc,
    )


def _entity_size(entity: dict[str, Any]) -> int:
    """The size Azure Storage counts for ``entity`` (see "Understanding the Table service data
    model"): 4 bytes, the keys in UTF-16, and per property 8 bytes, its name in UTF-16 and its
    value."""
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += 2 * len(value)
            continue
        size += 8 + 2 * len(name)
        if isinstance(value, bytes):
            size += 4 + len(value)
        elif isinstance(value, str):
            size += 4 + len(value.encode("utf-16-le"))
        else:
            size += 8
    return size


_DATETIME = len('"2026-01-01T00:00:00.000000Z"')


def _sent_size(entity: dict[str, Any]) -> int:
    """The size of ``entity`` as azure-data-tables sends it: JSON, binary values in base64,
    each property with its ``@odata.type``; Azurite refuses a body over 1 MiB."""
    size = 2  # {}
    for name, value in entity.items():
        if isinstance(value, bytes):
            length = 2 + 4 * -(-len(value) // 3) + len('"Edm.Binary"')
        elif isinstance(value, datetime.datetime):
            length = _DATETIME + len('"Edm.DateTime"')
        else:
            length = len(json.dumps(value)) + len('"Edm.String"')
        # "name": value, "name@odata.type": "type", : 2 * (quotes, ": ", ", ")
        size += 2 * len(json.dumps(name)) + len("@odata.type") + length + 8
    return size - 2


def _optional(entity: Any, name: str, kind: type[T]) -> T | None:
    """The property ``name`` of ``entity`` if it is a ``kind``, None if absent; else damaged."""
    value = entity.get(name)
    if value is not None and not isinstance(value, kind):
        raise DamagedRecord(f"{name} is of type {type(value).__name__}")
    return value


def _failed(exc: Any, index: int, *statuses: int) -> bool:
    return getattr(exc, "index", None) == index and getattr(exc, "status_code", None) in statuses


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Removal(NamedTuple):
    """Removing one expired session: its expiry entry and (unless gone) the session."""

    ops: list[Any]
    key: str
    user_id: str | None


class TableStorage(Storage):
    """Records in the table ``TABLE["TABLE_NAME"]`` (see ``AZURE_SESSIONS["TABLE"]``)."""

    engine = "table"

    def __init__(
        self, connection: Connection, prefix: str, hashed: bool, create_table: bool
    ) -> None:
        self.connection = connection
        self.timeout = connection.budget
        self.prefix = prefix
        self.namespace = _namespace(prefix)
        self.shards = all_shards(hashed)
        self.runner = Runner(connection, create_table, WORKERS, self.unavailable)
        tables = import_tables()
        from azure.core import MatchConditions, exceptions

        self._if_match = MatchConditions.IfNotModified
        self._not_found = exceptions.ResourceNotFoundError
        self._modified = exceptions.ResourceModifiedError
        self._transaction_error = tables.TableTransactionError
        self._no_response = (exceptions.ServiceRequestError, exceptions.ServiceResponseError)
        self._replace = tables.UpdateMode.REPLACE
        self._merge = tables.UpdateMode.MERGE

    @classmethod
    def from_settings(cls) -> TableStorage:
        config = app_settings.TABLE
        return cls(
            connection_from_settings(config, app_settings.TIMEOUT),
            app_settings.KEY_PREFIX,
            app_settings.HASH_KEYS,
            config.CREATE_TABLE,
        )

    def __repr__(self) -> str:
        return (
            f"<TableStorage {self.connection.endpoint} table={self.connection.table_name!r} "
            f"prefix={self.prefix!r}>"
        )

    def describe(self) -> str:
        return f"{redact(self.connection.endpoint)}, table {self.connection.table_name}"

    # Keys and entities

    def _partition(self, key: str) -> str:
        return f"{self.namespace}.s.{shard(key)}"

    def _user_partition(self, user_id: str) -> str:
        escaped = _escape(user_id)
        if len(escaped) > 400:
            return f"{self.namespace}.uh.{hashlib.sha256(user_id.encode()).hexdigest()}"
        return f"{self.namespace}.u.{escaped}"

    @staticmethod
    def _index_row(key: str, expires: datetime.datetime) -> str:
        return f"x.{bucket_end(expires):011d}.{key}"

    def _entity(self, record: Record, created: datetime.datetime) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self._partition(record.key),
            "RowKey": "s." + record.key,
            "Expires": record.expires,
            "Created": created,
            "Updated": record.updated or created,
        }
        if record.user_id is not None:
            entity["UserId"] = record.user_id
        if record.device is not None:
            entity["Device"] = record.device
        data = record.data
        for index, start in enumerate(range(0, max(len(data), 1), CHUNK)):
            entity[_chunk_name(index)] = data[start : start + CHUNK]
        size = max(_entity_size(entity), _sent_size(entity))
        if size > MAX_ENTITY:
            raise SessionTooLarge(
                f"The session's data is {len(data):,} bytes: with its keys and properties, in "
                f"base64 as it is sent, that is a {size:,}-byte table entity, and an Azure "
                f"Table entity holds at most {MAX_ENTITY:,} bytes (1 MiB), so a session's data "
                f"at most about {MAX_DATA:,} bytes. Keep less in the session."
            )
        return entity

    def _index_entity(self, record: Record) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self._partition(record.key),
            "RowKey": self._index_row(record.key, record.expires),
            "Expires": record.expires,
        }
        if record.user_id is not None:
            entity["UserId"] = record.user_id
        return entity

    def _user_entity(self, user_id: str, key: str) -> dict[str, Any]:
        return {"PartitionKey": self._user_partition(user_id), "RowKey": key}

    def _record(
        self, key: str, entity: Any, now: datetime.datetime | None = None
    ) -> Record | None:
        """The record ``entity`` holds; None when expired. Raises ``DamagedRecord``."""
        expires = _expires(entity)
        if expires <= (now or utcnow()):
            return None
        created = _optional(entity, "Created", datetime.datetime) or expires
        updated = _optional(entity, "Updated", datetime.datetime) or entity.metadata["timestamp"]
        user_id = _optional(entity, "UserId", str)
        device = _optional(entity, "Device", str)
        chunks: list[bytes] = []
        while isinstance(chunk := entity.get(_chunk_name(len(chunks))), bytes):
            chunks.append(chunk)
        names = [name for name in entity if _CHUNK.fullmatch(name)]
        if not chunks or len(chunks) != len(names):
            found = ", ".join(f"{name} ({type(entity[name]).__name__})" for name in names)
            raise DamagedRecord(f"its data is not binary Data, Data1...: {found or 'none'}")
        return Record(
            key=key,
            data=b"".join(chunks),
            expires=_plain(expires),
            user_id=user_id,
            version=Version(entity.metadata["etag"], _plain(created)),
            created=_plain(created),
            updated=_plain(updated),
            device=device,
        )

    def _get(self, key: str, *select: str) -> Call:
        """Read the session ``key``: every property, or those named in ``select``."""
        return Call(
            "get_entity",
            (self._partition(key), "s." + key),
            {"select": list(select)} if select else {},
        )

    def _if_unchanged(self, etag: str) -> dict[str, Any]:
        return {"etag": etag, "match_condition": self._if_match}

    # The storage interface, each method written once as steps that the runner carries out
    # with the sync client or an async one.

    def _load(self, key: str) -> Steps[Record | None]:
        try:
            entity = yield self._get(key)
        except self._not_found:
            return None
        return self._readable(key, entity)

    def _readable(
        self, key: str, entity: Any, now: datetime.datetime | None = None
    ) -> Record | None:
        """The record of ``entity``, or None when it is expired or damaged (and reported)."""
        try:
            return self._record(key, entity, now)
        except DamagedRecord as exc:
            self.damaged(key, str(exc))
            return None

    def _create(self, record: Record) -> Steps[Version | None]:
        created = record.created or record.updated or utcnow()
        ops = [("create", self._entity(record, created)), ("upsert", self._index_entity(record))]
        try:
            # Applied twice, the insert finds its key taken: the core draws another key.
            result = yield Call("submit_transaction", (ops,), resend=1)
        except self._transaction_error as exc:
            if _failed(exc, 0, 409):
                return None
            raise
        if record.user_id is not None:
            yield Call("upsert_entity", (self._user_entity(record.user_id, record.key),))
        return Version(result[0]["etag"], created)

    def _update(self, record: Record, loaded: Record) -> Steps[Version | None]:
        etag, created = loaded.version
        entity = self._entity(record, created)
        old_row = self._index_row(loaded.key, loaded.expires)
        new_row = self._index_row(record.key, record.expires)
        user_changed = record.user_id != loaded.user_id
        if old_row == new_row and not user_changed:
            try:
                result = yield Call(
                    "update_entity", (entity,), {"mode": self._replace, **self._if_unchanged(etag)}
                )
            except (self._modified, self._not_found):
                return None
            return Version(result["etag"], created)
        if user_changed and record.user_id is not None:
            yield Call("upsert_entity", (self._user_entity(record.user_id, record.key),))
        result = yield from self._write_indexed(
            ("update", entity, {"mode": "replace", **self._if_unchanged(etag)}),
            old_row,
            record,
        )
        if result is None:
            return None
        if user_changed and loaded.user_id is not None:
            yield Call("delete_entity", (self._user_partition(loaded.user_id), record.key))
        return Version(result[0]["etag"], created)

    def _write_indexed(self, write: Any, old_row: str, record: Record) -> Steps[Any]:
        """``write`` the session (conditionally) and its expiry entry as ``record`` has it,
        moved from ``old_row``, in one transaction; its result, or None when the session
        changed or is gone."""
        ops: list[Any] = [write]
        new_row = self._index_row(record.key, record.expires)
        if old_row != new_row:
            ops.append(("delete", {"PartitionKey": write[1]["PartitionKey"], "RowKey": old_row}))
        ops.append(("upsert", self._index_entity(record)))
        while True:
            try:
                # Applied twice, the write meets its own ETag change: the core reloads and
                # finds its own data.
                return (yield Call("submit_transaction", (ops,), resend=1))
            except self._transaction_error as exc:
                if _failed(exc, 0, 404, 412):
                    return None
                if len(ops) == 3 and _failed(exc, 1, 404):
                    del ops[1]  # no old entry to move (written by something else): go on
                    continue
                raise

    def _touch(self, record: Record, loaded: Record) -> Steps[Version | None]:
        etag, created = loaded.version
        fields = {
            "PartitionKey": self._partition(loaded.key),
            "RowKey": "s." + loaded.key,
            "Expires": record.expires,
            "Updated": record.updated or utcnow(),
        }
        old_row = self._index_row(loaded.key, loaded.expires)
        if old_row == self._index_row(loaded.key, record.expires):
            try:
                result = yield Call(
                    "update_entity", (fields,), {"mode": self._merge, **self._if_unchanged(etag)}
                )
            except (self._modified, self._not_found):
                return None
            return Version(result["etag"], created)
        result = yield from self._write_indexed(
            ("update", fields, {"mode": "merge", **self._if_unchanged(etag)}),
            old_row,
            self._touched(record, loaded),
        )
        return None if result is None else Version(result[0]["etag"], created)

    def _delete(self, key: str) -> Steps[None]:
        for _ in range(3):
            try:
                entity = yield self._get(key)
            except self._not_found:
                return
            ops: list[Any] = [("delete", entity, self._if_unchanged(entity.metadata["etag"]))]
            try:
                row = self._index_row(key, _expires(entity))
            except DamagedRecord:
                pass  # a damaged session goes without its entry, which clear_expired removes
            else:
                ops.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": row}))
            try:
                # Applied twice, the delete finds the session gone (404): read it again.
                yield Call("submit_transaction", (ops,), resend=1)
            except self._transaction_error as exc:
                if _failed(exc, 0, 404, 412):
                    continue  # changed meanwhile: read it again
                if not _failed(exc, 1, 404):
                    raise
                try:
                    yield Call("submit_transaction", (ops[:1],), resend=1)
                except self._transaction_error as exc:
                    if _failed(exc, 0, 404, 412):
                        continue
                    raise
            if isinstance(user_id := entity.get("UserId"), str):
                yield Call("delete_entity", (self._user_partition(user_id), key))
            return
        yield Call("delete_entity", (self._partition(key), "s." + key))

    def _removals(self, partition: str, now: datetime.datetime) -> Steps[list[_Removal]]:
        """The expired sessions of one partition, found through their expiry entries."""
        seconds = calendar.timegm(now.utctimetuple())
        entries = yield _reliable(self._due(partition, now, "RowKey", "UserId"))
        removals = []
        for entry in entries:
            _, end, key = entry["RowKey"].split(".", 2)
            index_op = (
                "delete",
                {"PartitionKey": partition, "RowKey": entry["RowKey"]},
                self._if_unchanged(entry.metadata["etag"]),
            )
            session = {"PartitionKey": partition, "RowKey": "s." + key}
            if int(end) <= seconds:
                # Its whole hour has passed; the entry would have moved with a later expiry.
                ops = [index_op, ("delete", session)]
            else:
                try:
                    entity = yield _reliable(self._get(key, "Expires"))
                except self._not_found:
                    removals.append(_Removal([index_op], key, entry.get("UserId")))
                    continue
                expires = entity.get("Expires")
                if isinstance(expires, datetime.datetime) and expires > now:
                    continue  # a damaged session due by its entry is removed with it
                ops = [index_op, ("delete", session, self._if_unchanged(entity.metadata["etag"]))]
            removals.append(_Removal(ops, key, entry.get("UserId")))
        return removals

    def _due(self, partition: str, now: datetime.datetime, *select: str) -> Call:
        """List the expiry entries of ``partition`` that are due at ``now``."""
        seconds = calendar.timegm(now.utctimetuple())
        return Call(
            "query",
            (
                "PartitionKey eq @pk and RowKey ge @lo and ( ( RowKey lt @due ) or "
                "( RowKey lt @hi and Expires le @now ) )",
            ),
            {
                "parameters": {
                    "pk": partition,
                    "lo": "x.",
                    "due": f"x.{seconds + 1:011d}",
                    "hi": f"x.{bucket_end(now) + 1:011d}",
                    "now": now,
                },
                "select": list(select),
            },
        )

    def _remove(self, removals: list[_Removal]) -> Steps[list[_Removal]]:
        """Carry out ``removals`` (one partition, one transaction); return those done."""
        removals = list(removals)
        resent = 0
        while removals:
            ops = [op for removal in removals for op in removal.ops]
            try:
                yield Call("submit_transaction", (ops,))
                return removals
            except self._no_response as exc:
                if resent == RESENDS or not self.runner.dropped(exc):
                    raise
                logger.debug(
                    "Table: the connection of a cleanup transaction was dropped: sending it again"
                )
                resent += 1
                continue
            except self._transaction_error as exc:
                if resent and _failed(exc, 0, 404):
                    # A transaction is atomic: its first removal gone means that an earlier
                    # send, whose response was lost, removed them all.
                    return removals
                index = getattr(exc, "index", None)
                if not isinstance(index, int) or getattr(exc, "status_code", None) not in (
                    404,
                    412,
                ):
                    raise
                position = 0
                for number, removal in enumerate(removals):
                    if index < position + len(removal.ops):
                        if index == position + 1 and exc.status_code == 404:
                            removals[number] = removal._replace(ops=removal.ops[:1])
                        else:  # its entry moved or its session changed: still in use
                            del removals[number]
                        break
                    position += len(removal.ops)
                else:
                    raise
        return removals

    def _clear_partition(self, partition: str, sweep: Sweep) -> Steps[list[_Removal]]:
        if sweep.stopped():
            return []
        removals = yield from self._removals(partition, utcnow())
        done = []
        for batch in _chunks(removals, BATCH // 2):
            if sweep.stopped():
                break
            removed = yield from self._remove(batch)
            done.extend(removed)
            sweep.removed(_count(removed))
        return done

    def _count_partition(self, partition: str) -> Steps[int]:
        return len((yield _reliable(self._due(partition, utcnow(), "RowKey"))))

    def _clear_users(self, partition: str, keys: list[str], sweep: Sweep) -> Steps[None]:
        for batch in _chunks(keys, BATCH):
            if sweep.stopped():
                return  # the next run's repair removes the rest (see _stale)
            removals = [
                _Removal([("delete", {"PartitionKey": partition, "RowKey": key})], key, None)
                for key in batch
            ]
            yield from self._remove(removals)

    def _session(self, key: str, *select: str) -> Steps[Any]:
        """The session entity ``key`` (see ``_get``), or None when there is none."""
        if not keys.is_storage_id(key):
            return None  # in a user entry: written by something else
        try:
            return (yield _reliable(self._get(key, *select)))
        except self._not_found:
            return None

    @staticmethod
    def _stale(entry: Any, entity: Any, owned: bool, now: datetime.datetime) -> bool:
        """Whether the user entry ``entry`` points at no session of its user: ``entity`` (the
        session) is gone, expired a while ago, or not ``owned`` by the user in an entry older
        than that while (a sign-in writes the entry just before the session)."""
        if entity is None:
            return True
        settled = now - datetime.timedelta(seconds=STALE_USER_ENTRY)
        expires = entity.get("Expires")
        if isinstance(expires, datetime.datetime) and expires <= settled:
            return True
        return not owned and entry.metadata["timestamp"] < settled

    def _prune(self, partition: str, entries: list[Any], sweep: Sweep) -> Steps[int]:
        """Remove the user entries ``entries`` of ``partition`` unless changed meanwhile (a
        sign-in): in transactions of ``BATCH``; return how many were removed."""
        removals = [
            _Removal(
                [
                    (
                        "delete",
                        {"PartitionKey": partition, "RowKey": entry["RowKey"]},
                        self._if_unchanged(entry.metadata["etag"]),
                    )
                ],
                entry["RowKey"],
                None,
            )
            for entry in entries
        ]
        removed = 0
        for batch in _chunks(removals, BATCH):
            if sweep.stopped():
                break
            removed += len((yield from self._remove(batch)))
        return removed

    def _pruned(self, count: int) -> None:
        if count:
            logger.info(
                "Table: removed %d user-index entries whose session is gone (%s)",
                count,
                self.describe(),
            )

    def _user_records(self, user_id: str) -> Steps[list[Record]]:
        partition = self._user_partition(user_id)
        entries = yield Call(
            "query",
            ("PartitionKey eq @pk",),
            {"parameters": {"pk": partition}, "select": ["RowKey", "Timestamp"]},
        )
        records = []
        stale = []
        now = utcnow()
        for entry in entries:
            key = entry["RowKey"]
            entity = yield from self._session(key)
            owned = entity is not None and entity.get("UserId") == user_id
            if owned and (record := self._readable(key, entity, now)) is not None:
                records.append(record)
            if self._stale(entry, entity, owned, now):
                stale.append(entry)
        if stale:
            self._pruned((yield from self._prune(partition, stale, Sweep())))
        return sorted(records, key=lambda record: record.key)

    def _user_entries(self) -> Steps[list[Any]]:
        """Every user entry of the namespace."""
        entries: list[Any] = yield _reliable(
            Call(
                "query",
                ("PartitionKey ge @lo and PartitionKey lt @hi",),
                {
                    # The partitions .u.<user> and .uh.<hash>; a namespace holds no ".".
                    "parameters": {"lo": f"{self.namespace}.u", "hi": f"{self.namespace}.v"},
                    "select": ["PartitionKey", "RowKey", "Timestamp"],
                },
            )
        )
        return entries

    def _stale_entries(self, partition: str, entries: list[Any]) -> Steps[list[Any]]:
        """Which of ``entries``, user entries of sessions of ``partition``, are stale (see
        ``_stale``): each session read alone, or where they are more than ``RANGE_READ``, the
        range of sessions they span read instead, ``PAGE`` at a time."""
        wanted = sorted({entry["RowKey"] for entry in entries})
        sessions: dict[str, Any] = {}
        if len(wanted) <= RANGE_READ:
            for key in wanted:
                sessions[key] = yield from self._session(key, "UserId", "Expires")
        else:
            names = set(wanted)
            bound, after = "ge", f"s.{wanted[0]}"
            while True:
                found = yield _reliable(
                    Call(
                        "query",
                        (f"PartitionKey eq @pk and RowKey {bound} @after and RowKey le @last",),
                        {
                            "parameters": {
                                "pk": partition,
                                "after": after,
                                "last": f"s.{wanted[-1]}",
                            },
                            "select": ["RowKey", "UserId", "Expires"],
                            "limit": PAGE,
                        },
                    )
                )
                for entity in found:
                    if (key := entity["RowKey"][2:]) in names:
                        sessions[key] = entity
                if len(found) < PAGE:
                    break
                bound, after = "gt", found[-1]["RowKey"]
        now = utcnow()
        stale = []
        for entry in entries:
            entity = sessions.get(entry["RowKey"])
            user_id = None if entity is None else entity.get("UserId")
            owned = isinstance(user_id, str) and (
                self._user_partition(user_id) == entry["PartitionKey"]
            )
            if self._stale(entry, entity, owned, now):
                stale.append(entry)
        return stale

    def _checks(self, entries: list[Any]) -> list[Steps[list[Any]]]:
        """The steps that find which of the user ``entries`` are stale, one per partition of
        their sessions; an entry that names no session id is stale as it is."""
        by_partition: dict[str, list[Any]] = {}
        unnamed = []
        for entry in entries:
            if keys.is_storage_id(entry["RowKey"]):
                by_partition.setdefault(self._partition(entry["RowKey"]), []).append(entry)
            else:
                unnamed.append(entry)
        steps = [self._stale_entries(p, found) for p, found in by_partition.items()]
        return [*steps, _done(unnamed)] if unnamed else steps

    def _prunes(self, stale: Iterable[list[Any]], sweep: Sweep) -> list[Steps[int]]:
        by_user: dict[str, list[Any]] = {}
        for entry in (entry for group in stale for entry in group):
            by_user.setdefault(entry["PartitionKey"], []).append(entry)
        return [self._prune(partition, found, sweep) for partition, found in by_user.items()]

    def _page(self, cursor: str | None, limit: int) -> Steps[Page]:
        now = utcnow()
        start = f"{self.namespace}.s."
        entities = yield Call(
            "query",
            (
                # "not (Expires le ...)" rather than "Expires gt ...": a session whose Expires
                # is missing or not a date is listed, to be counted as damaged.
                "PartitionKey ge @lo and PartitionKey lt @hi and RowKey gt @after and "
                "RowKey lt @end and not ( Expires le @now )",
            ),
            {
                "parameters": {
                    "lo": start + (shard(cursor) if cursor else ""),
                    "hi": start + "~",
                    "after": "s." + (cursor or ""),
                    "end": _SESSION_END,
                    "now": now,
                },
                "limit": limit,
            },
        )
        records, damaged = self.readable(
            (entity["RowKey"][2:], partial(self._record, entity["RowKey"][2:], entity, now))
            for entity in entities
        )
        last = entities[-1]["RowKey"][2:] if len(entities) == limit else None
        return Page(records, last, damaged)

    # The storage interface

    def load(self, key: str) -> Record | None:
        return self.runner.run(self._load(key), "load", Deadline(self.timeout))

    def create(self, record: Record) -> Version | None:
        return self.runner.run(self._create(record), "save", Deadline(self.timeout))

    def update(self, record: Record, loaded: Record) -> Version | None:
        return self.runner.run(self._update(record, loaded), "save", Deadline(self.timeout))

    def touch(self, record: Record, loaded: Record) -> Version | None:
        return self.runner.run(self._touch(record, loaded), "save", Deadline(self.timeout))

    def delete(self, key: str) -> None:
        self.runner.run(self._delete(key), "delete", Deadline(self.timeout))

    def _partitions(self) -> list[str]:
        return [f"{self.namespace}.s.{name}" for name in self.shards]

    def _user_batches(self, removed: Iterable[list[_Removal]], sweep: Sweep) -> list[Steps[None]]:
        by_user: dict[str, list[str]] = {}
        for removal in (item for group in removed for item in group):
            if removal.user_id is not None:
                by_user.setdefault(self._user_partition(removal.user_id), []).append(removal.key)
        return [self._clear_users(p, keys, sweep) for p, keys in by_user.items()]

    def clear_expired(self, sweep: Sweep | None = None) -> int:
        """Remove the due sessions with their expiry entries, partitions side by side; then
        their user entries; then any user entry whose session is gone (the repair). Stopped
        between batches (``sweep``), it leaves user entries that the next run's repair finds.

        Run with the async client where it can be: azure-core's async transactions cost about
        a third less CPU than its sync ones (each of which starts two thread pools)."""
        if self.runner.may_run_a_loop():
            return asyncio.run(self.aclear_expired(sweep))
        sweep = sweep or Sweep()
        before = sweep.count
        removed = self.runner.run_all(
            [self._clear_partition(p, sweep) for p in self._partitions()]
        )
        self.runner.run_all(self._user_batches(removed, sweep))
        if not sweep.stopped():
            stale = self.runner.run_all(self._checks(self.runner.run(self._user_entries())))
            self._pruned(sum(self.runner.run_all(self._prunes(stale, sweep))))
        return sweep.count - before

    def count_expired(self) -> int:
        return sum(self.runner.run_all([self._count_partition(p) for p in self._partitions()]))

    def user_records(self, user_id: str) -> list[Record]:
        return self.runner.run(self._user_records(user_id))

    def page(self, cursor: str | None = None, limit: int = 100) -> Page:
        return self.runner.run(self._page(key_cursor(cursor), limit))

    async def aload(self, key: str) -> Record | None:
        return await self.runner.arun(self._load(key), "load", Deadline(self.timeout))

    async def acreate(self, record: Record) -> Version | None:
        return await self.runner.arun(self._create(record), "save", Deadline(self.timeout))

    async def aupdate(self, record: Record, loaded: Record) -> Version | None:
        return await self.runner.arun(self._update(record, loaded), "save", Deadline(self.timeout))

    async def atouch(self, record: Record, loaded: Record) -> Version | None:
        return await self.runner.arun(self._touch(record, loaded), "save", Deadline(self.timeout))

    async def adelete(self, key: str) -> None:
        await self.runner.arun(self._delete(key), "delete", Deadline(self.timeout))

    async def aclear_expired(self, sweep: Sweep | None = None) -> int:
        sweep = sweep or Sweep()
        before = sweep.count
        removed = await self.runner.arun_all(
            [self._clear_partition(p, sweep) for p in self._partitions()]
        )
        await self.runner.arun_all(self._user_batches(removed, sweep))
        if not sweep.stopped():
            stale = await self.runner.arun_all(
                self._checks(await self.runner.arun(self._user_entries()))
            )
            self._pruned(sum(await self.runner.arun_all(self._prunes(stale, sweep))))
        return sweep.count - before

    async def acount_expired(self) -> int:
        return sum(
            await self.runner.arun_all([self._count_partition(p) for p in self._partitions()])
        )

    async def auser_records(self, user_id: str) -> list[Record]:
        return await self.runner.arun(self._user_records(user_id))

    async def apage(self, cursor: str | None = None, limit: int = 100) -> Page:
        return await self.runner.arun(self._page(key_cursor(cursor), limit))

    def close(self) -> None:
        self.runner.close()

    def raw_client(self) -> Any:
        """The process's ``azure.data.tables.TableClient`` on the sessions table."""
        return self.runner.client()


def _done(value: T) -> Steps[T]:
    """Steps that need no request."""
    yield from ()
    return value


def _count(removed: list[_Removal]) -> int:
    """The sessions ``removed`` removed (not counting entries whose session was gone)."""
    return sum(len(removal.ops) == 2 for removal in removed)


class SessionStore(StoreSession):
    """Sessions in Azure Table Storage or Cosmos DB for Table (see ``AZURE_SESSIONS["TABLE"]``)."""

    storage_class = TableStorage
