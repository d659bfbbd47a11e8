"""The storage side of activity tracking, on every engine, sync and async: a record keeps its
creation time, last write and device; ``touch()`` writes only the expiry and the last
activity, conditionally on the version, and never over a newer save or a deleted record."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from django_azure_sessions.core import keys
from django_azure_sessions.core.storage import Record, Storage, utcnow

pytestmark = pytest.mark.django_db(databases="__all__")

DEVICE = '{"ua":"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0","ip":"203.0.113.0"}'


class Calls:
    """A storage's methods by their sync names, run natively or through their async twins."""

    def __init__(self, storage: Storage, is_async: bool) -> None:
        self.storage = storage
        self.is_async = is_async

    def __getattr__(self, name: str) -> Any:
        if self.is_async:
            return async_to_sync(getattr(self.storage, "a" + name))
        return getattr(self.storage, name)


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def calls(engine: type[Any], request: pytest.FixtureRequest) -> Calls:
    return Calls(engine.get_storage(), request.param)


def at(seconds: float) -> datetime.datetime:
    """A time ``seconds`` from now, to the millisecond (what every engine keeps)."""
    when = utcnow() + datetime.timedelta(seconds=seconds)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def new_record(user_id: str | None = None, *, device: str | None = DEVICE) -> Record:
    now = at(0)
    return Record(
        key=keys.storage_id(keys.new_key()),
        data=b"payload",
        expires=now + datetime.timedelta(hours=1),
        user_id=user_id,
        created=now,
        updated=now,
        device=device,
    )


def created(calls: Calls, record: Record) -> Record:
    record.version = calls.create(record)
    assert record.version is not None
    loaded = calls.load(record.key)
    assert loaded is not None
    return loaded  # type: ignore[no-any-return]


def close(a: datetime.datetime | None, b: datetime.datetime) -> bool:
    return a is not None and abs(a - b) < datetime.timedelta(milliseconds=5)


def test_load_returns_created_updated_and_device(calls: Calls) -> None:
    record = new_record("u1")
    loaded = created(calls, record)
    assert loaded.device == DEVICE
    assert close(loaded.created, record.created)  # type: ignore[arg-type]
    assert close(loaded.updated, record.updated)  # type: ignore[arg-type]


def test_no_device_is_kept_as_none(calls: Calls) -> None:
    loaded = created(calls, new_record(device=None))
    assert loaded.device is None


def test_update_keeps_created_and_writes_device(calls: Calls) -> None:
    loaded = created(calls, new_record("u1"))
    later = dataclasses.replace(loaded, data=b"changed", updated=at(1), device='{"ua":"x"}')
    assert calls.update(later, loaded) is not None
    again = calls.load(loaded.key)
    assert again.data == b"changed"
    assert again.device == '{"ua":"x"}'
    assert close(again.created, loaded.created)
    assert close(again.updated, later.updated)


def test_touch_writes_only_expiry_and_activity(calls: Calls) -> None:
    loaded = created(calls, new_record("u1"))
    touch = Record(
        key=loaded.key, data=b"ignored", expires=at(7200), updated=at(30), device="ignored"
    )
    version = calls.touch(touch, loaded)
    assert version is not None
    after = calls.load(loaded.key)
    assert (after.data, after.user_id, after.device) == (b"payload", "u1", DEVICE)
    assert close(after.expires, touch.expires)
    assert close(after.updated, touch.updated)
    assert close(after.created, loaded.created)
    # The version the touch returned is the one the next save names.
    saved = dataclasses.replace(after, data=b"next", version=None)
    assert calls.update(saved, dataclasses.replace(after, version=version)) is not None
    assert calls.load(loaded.key).data == b"next"


def test_touch_keeps_the_session_in_its_users_index(calls: Calls) -> None:
    """Sliding far past the first expiry, the session stays listed for its user (and so
    within reach of "sign out everywhere")."""
    user = f"u{keys.new_key()[:8]}"
    record = new_record(user)
    record.expires = at(2)
    loaded = created(calls, record)
    touch = Record(key=loaded.key, data=b"", expires=at(3600 * 24 * 30), updated=at(1))
    assert calls.touch(touch, loaded) is not None
    assert [r.key for r in calls.user_records(user)] == [loaded.key]


def test_touch_never_overwrites_a_newer_save(calls: Calls) -> None:
    loaded = created(calls, new_record("u1"))
    newer = dataclasses.replace(loaded, data=b"newer", expires=at(600), updated=at(1))
    assert calls.update(newer, loaded) is not None
    stale_touch = Record(key=loaded.key, data=b"", expires=at(7200), updated=at(2))
    assert calls.touch(stale_touch, loaded) is None
    after = calls.load(loaded.key)
    assert after.data == b"newer"
    assert close(after.expires, newer.expires)


def test_touch_never_brings_back_a_deleted_record(calls: Calls) -> None:
    user = f"u{keys.new_key()[:8]}"
    loaded = created(calls, new_record(user))
    calls.delete(loaded.key)
    touch = Record(key=loaded.key, data=b"", expires=at(7200), updated=at(1))
    assert calls.touch(touch, loaded) is None
    assert calls.load(loaded.key) is None
    assert calls.user_records(user) == []
