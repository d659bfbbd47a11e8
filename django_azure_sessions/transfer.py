"""Copying live sessions from one engine to another (``manage.py migratesessions``).

A source lists records: any engine of this package (through its storage's ``page()``), or
Django's ``db`` and ``cached_db`` engines (through their model). Every record is written to
the target with the target's create-if-absent, so a copy never overwrites a session already
in the target, and running it twice copies only what the first run did not.

Sessions keep their keys: a cookie issued by the old engine finds its session in the new
one. Data from this package's engines is copied as it is stored; data from Django's engines
is decoded by the source engine (so its salt and serializer apply) and encoded again for the
target.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from importlib import import_module
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .core import codec, keys
from .core.session import USER_ID_KEY, StoreSession
from .core.storage import Record, Storage, utcnow


@dataclasses.dataclass
class Counts:
    copied: int = 0
    present: int = 0  # already in the target: left as they are
    skipped: int = 0  # expired, or a key or data that no engine would accept


#: The engines of this package by their short names, as the commands accept them.
SHORT_NAMES = {
    name: f"django_azure_sessions.backends.{name}" for name in ("sql", "redis", "table")
}


def engine_module(engine: str) -> str:
    """The module of the engine ``engine`` names: a module path, or a short name ("redis")."""
    return SHORT_NAMES.get(engine.strip().lower(), engine)


def session_store(engine: str) -> type[Any]:
    """The ``SessionStore`` class of the engine ``engine`` (see ``engine_module()``)."""
    try:
        return import_module(engine_module(engine)).SessionStore  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(f"{engine!r} is not a session engine: {exc}") from exc


def our_store(engine: str, purpose: str) -> type[StoreSession]:
    """The ``SessionStore`` of ``engine``, which ``purpose`` needs to be one of this package."""
    store = session_store(engine)
    if not issubclass(store, StoreSession):
        raise ImproperlyConfigured(
            f"{purpose} on the engines of django_azure_sessions only, and {engine!r} is not one."
        )
    return store


def source_records(
    engine: str, batch_size: int, target: type[StoreSession]
) -> Iterator[Record | None]:
    """Every session of ``engine``, a page at a time, as ``target`` stores it; None for one
    that cannot be copied."""
    store = session_store(engine)
    if issubclass(store, StoreSession):
        yield from store.get_storage().records(batch_size)
    elif hasattr(store, "get_model_class"):  # django.contrib.sessions db and cached_db
        yield from _model_records(store, batch_size, target())
    else:
        raise ImproperlyConfigured(
            f"The sessions of {engine!r} cannot be listed, so they cannot be copied: only "
            f"django_azure_sessions engines and Django's db and cached_db engines can."
        )


def _model_records(
    store: type[Any], batch_size: int, encoder: StoreSession
) -> Iterator[Record | None]:
    model = store.get_model_class()
    decoder = store()
    last = ""
    while True:
        rows = list(
            model.objects.filter(session_key__gt=last, expire_date__gt=timezone.now())
            .order_by("session_key")
            .values_list("session_key", "session_data", "expire_date")[:batch_size]
        )
        for key, data, expires in rows:
            yield _django_record(decoder, encoder, key, data, expires)
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def _django_record(
    decoder: Any, encoder: StoreSession, key: str, data: str, expires: datetime.datetime
) -> Record | None:
    if not keys.is_valid(key):
        return None
    session = decoder.decode(data)  # {} when the signature or the serializer fails
    if not session:
        return None
    if timezone.is_naive(expires):
        expires = timezone.make_aware(expires)
    user_id = session.get(USER_ID_KEY)
    return Record(
        key=keys.storage_id(key),
        data=codec.encode(session, encoder.key_salt, encoder.serializer),
        expires=expires.astimezone(datetime.timezone.utc),
        user_id=None if user_id is None else str(user_id),
        updated=utcnow(),
    )


def copy(records: Iterator[Record | None], target: Storage, *, dry_run: bool = False) -> Counts:
    counts = Counts()
    for record in records:
        if record is None or record.expires <= utcnow():
            counts.skipped += 1
        elif dry_run:
            if target.load(record.key) is None:
                counts.copied += 1
            else:
                counts.present += 1
        elif _create(target, record):
            counts.copied += 1
        else:
            counts.present += 1
    return counts


def _create(target: Storage, record: Record) -> bool:
    if target.create(record) is not None:
        return True
    if target.load(record.key) is not None:
        return False  # a live session: the target's own, left alone
    # An expired one that clear_expired() has not removed yet holds the key: replace it.
    target.delete(record.key)
    return target.create(record) is not None
