"""``manage.py clearsessions`` and ``manage.py migratesessions``, on the real stores."""

from __future__ import annotations

import datetime
import io
import time
from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Sweep

from .fixtures.engines import make_record
from .fixtures.redis import free_port
from .fixtures.stores import every_store
from .fixtures.table import Azurite

pytestmark = pytest.mark.django_db(databases="__all__")

SQL = "django_azure_sessions.backends.sql"
REDIS = "django_azure_sessions.backends.redis"
TABLE = "django_azure_sessions.backends.table"
DJANGO_DB = "django.contrib.sessions.backends.db"


@pytest.fixture
def stores(azurite: Azurite) -> Iterator[str]:
    """All three engines configured at once, under a prefix of this test."""
    with every_store(azurite) as prefix:
        yield prefix


def store(engine: str) -> type[Any]:
    return import_module(engine).SessionStore  # type: ignore[no-any-return]


def run(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def saved(engine: str, **data: Any) -> str:
    session = store(engine)()
    session.update(data)
    session.save()
    return session.session_key  # type: ignore[no-any-return]


# clearsessions


def expired(engine: str, count: int, user_id: str = "3") -> None:
    """``count`` expired sessions of ``user_id``: written with a past expiry, or on Redis
    (where a key expires by itself) as short-lived sessions beside a live one of the same
    user, whose index entries outlive them by as long again."""
    storage = store(engine).get_storage()
    expires_in = 0.05 if engine == REDIS else -7200
    for _ in range(count):
        key = keys.storage_id(keys.new_key())
        storage.create(make_record(key, expires_in=expires_in, user_id=user_id))
    if engine == REDIS:
        storage.create(make_record(keys.storage_id(keys.new_key()), user_id=user_id))
        time.sleep(1.3)  # index scores are whole seconds, rounded up


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("engine", [SQL, REDIS, TABLE])
def test_clearsessions_writes_one_summary_line(stores: str, engine: str) -> None:
    live = saved(engine, **{USER_ID_KEY: "3"})
    expired(engine, 1)
    items = "user-index entries" if engine == REDIS else "sessions"
    with override_settings(SESSION_ENGINE=engine):
        assert run("clearsessions", verbosity=0) == ""  # for a cron job that mails nothing
        again = run("clearsessions")  # the quiet run removed it
    assert again.startswith(f"0 expired {items} removed from {engine} in ")
    assert again.count("\n") == 1
    assert store(engine)(live)[USER_ID_KEY] == "3"


@pytest.mark.parametrize("engine", [SQL, REDIS, TABLE])
def test_a_dry_run_counts_and_removes_nothing(stores: str, engine: str) -> None:
    expired(engine, 3)
    items = "user-index entries" if engine == REDIS else "sessions"
    dry = run("clearsessions", "--engine", engine, "--dry-run")
    assert dry == f"3 expired {items} would be removed from {engine} (dry run: nothing removed).\n"
    assert run("clearsessions", "--engine", engine, "--dry-run") == dry
    assert run("clearsessions", "--engine", engine).startswith(f"3 expired {items} removed")
    assert run("clearsessions", "--engine", engine, "--dry-run").startswith("0 expired")


@pytest.mark.parametrize("engine", [SQL, REDIS, TABLE])
def test_a_progress_bar_on_a_terminal(stores: str, engine: str) -> None:
    expired(engine, 4)
    out = Terminal()
    call_command("clearsessions", "--engine", engine, stdout=out)
    bar, summary = out.getvalue().rsplit("\n", 2)[:2]
    assert bar.startswith("\r[")
    assert bar.endswith("/s")
    assert "] 100%  4 of 4 expired" in bar
    assert summary.startswith("4 expired")


def test_max_runtime_stops_between_batches_and_the_next_run_goes_on(stores: str) -> None:
    expired(SQL, 5)
    section = {**settings.AZURE_SESSIONS, "SQL": {"DATABASE": "default", "CLEAR_BATCH_SIZE": 2}}
    with override_settings(AZURE_SESSIONS=section):
        out = run("clearsessions", "--engine", SQL, "--max-runtime", "0.000001")
        # One batch always runs, so that any run makes headway.
        assert out.startswith("Stopped after ")
        assert out.endswith(
            f"2 expired sessions removed from {SQL}, 3 left; the next run goes on.\n"
        )
        assert run("clearsessions", "--engine", SQL).startswith("3 expired sessions removed")


@pytest.mark.parametrize("engine", [SQL, REDIS, TABLE])
def test_a_stopped_sweep_leaves_what_the_next_run_finishes(stores: str, engine: str) -> None:
    expired(engine, 5)
    storage = store(engine).get_storage()
    sweep = Sweep(max_runtime=0.000001)
    removed = storage.clear_expired(sweep)
    assert removed == sweep.count
    assert removed + storage.count_expired() == 5
    assert storage.clear_expired() == 5 - removed
    assert storage.count_expired() == 0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_max_runtime_must_be_seconds(value: str) -> None:
    with pytest.raises(CommandError, match="is not a number of seconds above 0"):
        run("clearsessions", "--max-runtime", value)


def test_a_failed_batch_is_an_error_that_says_what_was_done(stores: str) -> None:
    section = {
        **settings.AZURE_SESSIONS,
        "REDIS": {"URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"},
    }
    with override_settings(AZURE_SESSIONS=section), pytest.raises(CommandError) as caught:
        run("clearsessions", "--engine", REDIS)
    message = str(caught.value)
    assert message.startswith(f"Removing expired user-index entries of {REDIS} failed (")
    assert message.endswith(
        "after 0 were removed; what was removed stays removed, and the next run goes on."
    )
    assert "hunter2" not in message


def test_djangos_engines_take_no_operator_options() -> None:
    with pytest.raises(CommandError, match="need an engine of django-azure-sessions"):
        run("clearsessions", "--engine", DJANGO_DB, "--dry-run")


@pytest.mark.parametrize("engine", [SQL, TABLE])
def test_clearsessions_counts_each_removed_session(stores: str, engine: str) -> None:
    storage = store(engine).get_storage()
    for _ in range(3):
        storage.create(make_record(keys.storage_id(keys.new_key()), expires_in=-7200))
    out = run("clearsessions", "--engine", engine, verbosity=2)
    assert out.startswith(f"3 expired sessions removed from {engine}")


def test_clearsessions_prunes_the_redis_user_index(stores: str) -> None:
    storage = store(REDIS).get_storage()
    live = keys.storage_id(keys.new_key())
    storage.create(make_record(live, user_id="8"))
    storage.create(make_record(keys.storage_id(keys.new_key()), expires_in=0.3, user_id="8"))
    # An index entry outlives its session by as long again (the set lives on with `live`).
    time.sleep(0.7)
    out = run("clearsessions", "--engine", REDIS, verbosity=2)
    assert out.startswith(f"1 expired user-index entries removed from {REDIS}")
    assert [r.key for r in storage.user_records("8")] == [live]


def test_clearsessions_runs_djangos_engines_too() -> None:
    old = DjangoDBStore()
    old["a"] = 1
    old.set_expiry(-10)
    old.save()
    assert Session.objects.filter(session_key=old.session_key).exists()
    out = run("clearsessions", "--engine", DJANGO_DB)
    assert out.startswith(f"Expired sessions removed from {DJANGO_DB}")
    assert not Session.objects.filter(session_key=old.session_key).exists()
    with pytest.raises(CommandError, match="doesn't support clearing expired sessions"):
        run("clearsessions", "--engine", __name__)  # its SessionStore is below


class SessionStore(SessionBase):
    """An engine without ``clear_expired()``, as third-party ones may be."""


# migratesessions


def _django_sessions() -> dict[str, str]:
    """Sessions written by Django's db engine: two to copy, an expired one (not even read),
    and two that cannot be copied (a key no engine accepts, data that does not verify)."""
    made = {}
    for name, data in {"signed_in": {USER_ID_KEY: 42, "cart": [1]}, "anonymous": {"b": 2}}.items():
        session = DjangoDBStore()
        session.update(data)
        session.save()
        made[name] = session.session_key
    expired = DjangoDBStore()
    expired["c"] = 3
    expired.set_expiry(-10)
    expired.save()
    later = timezone.now() + datetime.timedelta(hours=1)
    forged = DjangoDBStore().encode({"d": 4}).replace(":", ";", 1)
    Session.objects.create(session_key="not-a-django-key!", session_data="x", expire_date=later)
    Session.objects.create(session_key=keys.new_key(), session_data=forged, expire_date=later)
    return made


@pytest.mark.parametrize("target", [SQL, REDIS, TABLE])
def test_sessions_move_from_djangos_db_engine_keeping_their_keys(stores: str, target: str) -> None:
    made = _django_sessions()
    out = run("migratesessions", "--from", DJANGO_DB, "--to", target)
    assert "Copied 2 sessions" in out
    assert "0 already there, 2 expired, empty or unreadable skipped" in out
    new = store(target)
    assert dict(new(made["signed_in"]).items()) == {USER_ID_KEY: 42, "cart": [1]}
    assert dict(new(made["anonymous"]).items()) == {"b": 2}
    stored = new.get_storage()
    assert [r.key for r in stored.user_records("42")] == [keys.storage_id(made["signed_in"])]
    for key in made.values():
        record = stored.load(keys.storage_id(key))
        assert record is not None
        assert record.data.startswith(b"~")  # encoded again, in this package's format
        expected = Session.objects.get(session_key=key).expire_date
        assert abs((record.expires - expected).total_seconds()) < 1

    again = run("migratesessions", "--from", DJANGO_DB, "--to", target)
    assert "Copied 0 sessions" in again
    assert "2 already there" in again


@pytest.mark.parametrize(("source", "target"), [(SQL, REDIS), (REDIS, TABLE), (TABLE, SQL)])
def test_sessions_move_between_engines_of_this_package(
    stores: str, source: str, target: str
) -> None:
    signed_in = saved(source, **{USER_ID_KEY: "7", "theme": "dark"})
    anonymous = saved(source, cart=["apple"])
    already = saved(source, a=1)
    newer = store(target)(already)._record_for({"a": "newer"})
    assert store(target).get_storage().create(newer)  # the target has its own, newer copy

    with override_settings(SESSION_ENGINE=target):
        dry = run("migratesessions", "--from", source, "--dry-run")
        assert dry.startswith("Would copy 2 sessions")
        assert store(target)(signed_in).load() == {}  # nothing written
        out = run("migratesessions", "--from", source, "--batch-size", "1")

    assert "Copied 2 sessions" in out
    assert "1 already there" in out
    assert dict(store(target)(signed_in).items()) == {USER_ID_KEY: "7", "theme": "dark"}
    assert store(target)(anonymous)["cart"] == ["apple"]
    assert store(target)(already)["a"] == "newer"
    stored = store(target).get_storage()
    assert [r.key for r in stored.user_records("7")] == [keys.storage_id(signed_in)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--from", "django.contrib.sessions.backends.cache", "--to", SQL],
            "cannot be listed",
        ),
        (["--from", SQL, "--to", DJANGO_DB], "django_azure_sessions only"),
        (["--from", SQL, "--to", SQL], "same engine"),
        (["--from", "no.such.engine", "--to", SQL], "is not a session engine"),
        (["--from", DJANGO_DB, "--to", SQL, "--batch-size", "0"], "at least 1"),
    ],
)
def test_migratesessions_refuses_what_it_cannot_do(
    stores: str, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("migratesessions", *args)


def test_naive_expiry_dates_are_read_in_djangos_time_zone(stores: str) -> None:
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        session = DjangoDBStore()
        session["a"] = 1
        session.save()
        key = session.session_key
        run("migratesessions", "--from", DJANGO_DB, "--to", REDIS)
    record = store(REDIS).get_storage().load(keys.storage_id(key))
    assert record is not None
    ttl = (record.expires - timezone.now()).total_seconds()
    assert abs(ttl - settings.SESSION_COOKIE_AGE) < 60  # naive New York time read as such


def test_an_expired_copy_in_the_target_is_replaced(stores: str) -> None:
    session = DjangoDBStore()
    session["fresh"] = True
    session.save()
    stale = make_record(keys.storage_id(session.session_key), expires_in=-60)
    assert store(SQL).get_storage().create(stale)  # not yet removed by clearsessions
    out = run("migratesessions", "--from", DJANGO_DB, "--to", SQL)
    assert "Copied 1 sessions" in out
    assert store(SQL)(session.session_key)["fresh"] is True


def test_engines_of_this_package_go_by_their_short_names(stores: str) -> None:
    key = saved(SQL, theme="dark")
    with override_settings(SESSION_ENGINE=TABLE):
        assert "Copied 1 sessions from " + SQL + " to " + REDIS in run(
            "migratesessions", "--from", "sql", "--to", "Redis"
        )
    assert store(REDIS)(key)["theme"] == "dark"
    with pytest.raises(CommandError, match="same engine"):
        run("migratesessions", "--from", "redis", "--to", REDIS)


def test_a_wrong_engine_for_clearsessions_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="is not a session engine"):
        run("clearsessions", "--engine", "no.such.engine")
