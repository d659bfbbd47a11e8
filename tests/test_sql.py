"""The SQL engine on SQLite, PostgreSQL and MariaDB: what the contract suite does not cover."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.management import call_command
from django.db import OperationalError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_azure_sessions.backends.sql import SessionStore, SQLStorage
from django_azure_sessions.core import keys
from django_azure_sessions.core.storage import utcnow
from django_azure_sessions.models import Session

from .fixtures.engines import configured, make_record

SERVER_DATABASES = ["postgres", "mariadb"]


@contextlib.contextmanager
def sql_on(alias: str) -> Iterator[type[SessionStore]]:
    yield from configured("sql", {"SQL": {"DATABASE": alias}})


@pytest.fixture(params=["default", *SERVER_DATABASES])
def alias(request: pytest.FixtureRequest) -> Iterator[str]:
    with sql_on(request.param):
        yield request.param


@pytest.mark.django_db(databases="__all__")
class TestStatements:
    def test_records_go_to_the_configured_database(self, alias: str) -> None:
        session = SessionStore()
        session["a"] = 1
        session.save()
        stored_id = SQLStorage.get().prefix + keys.storage_id(session.session_key)
        for other in ["default", *SERVER_DATABASES]:
            exists = Session.objects.using(other).filter(key=stored_id).exists()
            assert exists is (other == alias)

    def test_one_statement_per_load_and_per_save(self, alias: str) -> None:
        session = SessionStore()
        with CaptureQueriesContext(connections[alias]) as create:
            session["a"] = 1
            session.save()
        with CaptureQueriesContext(connections[alias]) as load:
            loaded = SessionStore(session.session_key)
            assert loaded["a"] == 1
        with CaptureQueriesContext(connections[alias]) as save:
            loaded["a"] = 2
            loaded.save()
        assert [len(create), len(load), len(save)] == [1, 1, 1]
        assert load[0]["sql"].upper().startswith("SELECT")
        assert save[0]["sql"].upper().startswith("UPDATE")

    def test_insert_if_absent_on_every_vendor_path(self, alias: str) -> None:
        storage = SQLStorage.get()
        assert storage.create(make_record("k1")) == 1
        assert storage.create(make_record("k1")) is None
        # The plain INSERT path taken on SQL Server and other vendors.
        generic = SQLStorage(alias, storage.prefix, 1000)
        generic.sql_create = None
        assert generic.create(make_record("k2")) == 1
        assert generic.create(make_record("k2")) is None
        assert generic.create(make_record("k1")) is None

    def test_create_error_on_taken_key(self, alias: str) -> None:
        session = SessionStore()
        session.create()
        clash = SessionStore(session.session_key)
        clash._session_cache = {}
        with pytest.raises(CreateError):
            clash.save(must_create=True)

    def test_update_is_conditional_on_version(self, alias: str) -> None:
        storage = SQLStorage.get()
        version = storage.create(make_record("k"))
        loaded = storage.load("k")
        assert loaded is not None
        assert loaded.version == version
        assert storage.update(make_record("k"), loaded) == version + 1
        assert storage.update(make_record("k"), loaded) is None  # stale version
        storage.delete("k")
        assert storage.update(make_record("k"), loaded) is None  # gone

    @pytest.mark.parametrize("path", ["sync", "async"])
    def test_a_touch_is_one_update_that_keeps_the_version(self, alias: str, path: str) -> None:
        storage = SQLStorage.get()
        storage.create(make_record("k", user_id="7"))
        loaded = storage.load("k")
        assert loaded is not None
        later = utcnow() + datetime.timedelta(hours=2)
        touch = dataclasses.replace(make_record("k"), expires=later, updated=utcnow())
        call = storage.touch if path == "sync" else async_to_sync(storage.atouch)
        with CaptureQueriesContext(connections[alias]) as queries:
            assert call(touch, loaded) == loaded.version
        assert [q["sql"].split()[0] for q in queries] == ["UPDATE"]
        assert "+ 1" not in queries[0]["sql"]  # the version stays
        # The same values again still match the row (MySQL counts matched rows, not changed
        # ones, under Django's CLIENT.FOUND_ROWS).
        assert call(touch, loaded) == loaded.version
        after = storage.load("k")
        assert after is not None
        assert (after.version, after.user_id, after.data) == (loaded.version, "7", b"x")
        assert abs(after.expires - later) < datetime.timedelta(milliseconds=1)

    def test_a_touch_names_no_vendor_syntax(self, alias: str) -> None:
        """The same statement on every vendor, but for the quoting of names: mssql-django
        runs it as it is."""
        storage = SQLStorage.get()
        quote = connections[alias].ops.quote_name
        expected = "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s AND {} = %s".format(  # noqa: S608
            *map(quote, ["django_azure_sessions", "expires", "updated", "key", "version"])
        )
        assert storage.sql_touch == expected

    def test_a_row_deleted_behind_the_engines_back_is_never_listed(self, alias: str) -> None:
        """The user index is the indexed ``user_id`` column: nothing to repair."""
        storage = SQLStorage.get()
        user = f"u{keys.new_key()[:8]}"
        kept, gone = sorted(keys.storage_id(keys.new_key()) for _ in range(2))
        for key in (kept, gone):
            storage.create(make_record(key, user_id=user))
        assert [r.key for r in storage.user_records(user)] == [kept, gone]
        with connections[alias].cursor() as cursor:
            cursor.execute(storage.sql_delete, [storage.prefix + gone])
        assert [r.key for r in storage.user_records(user)] == [kept]
        assert [r.key for r in async_to_sync(storage.auser_records)(user)] == [kept]

    def test_expired_row_is_not_loaded(self, alias: str) -> None:
        storage = SQLStorage.get()
        storage.create(make_record("old", expires_in=-1))
        assert storage.load("old") is None
        assert Session.objects.using(alias).filter(key__endswith="old").exists()

    def test_the_device_column_is_migrated(self, alias: str) -> None:
        connection = connections[alias]
        applied = MigrationRecorder(connection).applied_migrations()
        assert ("django_azure_sessions", "0002_session_device") in applied
        with connection.cursor() as cursor:
            columns = connection.introspection.get_table_description(
                cursor, Session._meta.db_table
            )
        device = next(column for column in columns if column.name == "device")
        assert device.null_ok
        call_command("makemigrations", "django_azure_sessions", check=True, dry_run=True)

    def test_user_id_and_expiry_are_indexed(self) -> None:
        indexed = [index.fields for index in Session._meta.indexes]
        assert indexed == [["expires"], ["user_id"]]

    def test_timestamps_under_use_tz_false(self, alias: str, settings: Any) -> None:
        settings.USE_TZ = False
        session = SessionStore()
        session["a"] = 1
        session.save()
        record = SQLStorage.get().load(keys.storage_id(session.session_key))
        assert record is not None
        assert 3600 < (record.expires - utcnow()).total_seconds() <= settings.SESSION_COOKIE_AGE
        assert SessionStore(session.session_key)["a"] == 1
        assert SQLStorage.get().page().records


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_the_device_migration_applies_and_reverts_on_a_table_with_rows() -> None:
    """0002 adds a nullable column: existing rows load with no device; reverting drops it."""
    connection = connections["postgres"]
    app = "django_azure_sessions"
    with sql_on("postgres"):
        storage = SQLStorage.get()
        executor = MigrationExecutor(connection)
        executor.migrate([(app, "0001_initial")])
        try:
            with connection.cursor() as cursor:
                columns = connection.introspection.get_table_description(
                    cursor, Session._meta.db_table
                )
                assert "device" not in [column.name for column in columns]
                cursor.execute(
                    "INSERT INTO django_azure_sessions (key, data, expires, user_id, version, "
                    "created, updated) VALUES (%s, %s, %s, NULL, 1, %s, %s)",
                    [
                        storage.prefix + "old",
                        b"x",
                        utcnow() + datetime.timedelta(hours=1),
                        utcnow(),
                        utcnow(),
                    ],
                )
        finally:
            executor = MigrationExecutor(connection)
            executor.migrate(executor.loader.graph.leaf_nodes(app))
        record = storage.load("old")
        assert record is not None
        assert record.device is None


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_statements_are_prepared_through_djangos_options() -> None:
    """Preparing is the database's OPTIONS' business (psycopg 3), not the engine's."""

    def prepared() -> list[str]:
        with connections["postgres"].cursor() as check:
            check.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in check.fetchall()]

    connection = connections["postgres"]
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    connection.settings_dict["OPTIONS"] = {
        **options,
        "server_side_binding": True,
        "prepare_threshold": 2,
    }
    try:
        with sql_on("postgres"):
            session = SessionStore()
            session["a"] = 1
            session.save()
            for _ in range(3):
                assert SessionStore(session.session_key)["a"] == 1
            select = SQLStorage.get().sql_load.split(" WHERE ")[0]
            assert any(select in text for text in prepared())
    finally:
        connection.close()
        connection.settings_dict["OPTIONS"] = options
    assert not prepared()  # Django's default: nothing prepared


@pytest.mark.django_db(databases="__all__")
@pytest.mark.slow
def test_clear_expired_removes_100000_rows_in_batches(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SQLStorage, "_walk", lambda *args: None)  # by the index on PostgreSQL
    storage = SQLStorage.get()
    now = utcnow()
    expired = [
        Session(
            key=f"{storage.prefix}dead{i:06d}",
            data=b"x",
            expires=now - datetime.timedelta(minutes=1),
            created=now,
            updated=now,
        )
        for i in range(100_000)
    ]
    live = [
        Session(
            key=f"{storage.prefix}live{i:06d}",
            data=b"x",
            expires=now + datetime.timedelta(hours=1),
            created=now,
            updated=now,
        )
        for i in range(2_000)
    ]
    Session.objects.using(alias).bulk_create(expired + live, batch_size=5000)
    with CaptureQueriesContext(connections[alias]) as queries:
        removed = storage.clear_expired()
    assert removed == 100_000
    remaining = Session.objects.using(alias).filter(key__startswith=storage.prefix)
    assert remaining.count() == 2_000
    assert not remaining.exclude(key__contains="live").exists()
    statements = [q["sql"].upper() for q in queries]
    size = storage.batch_size  # CLEAR_BATCH_SIZE, 2500 by default
    assert len(statements) == 100_000 // size + 1  # full batches, then one that finds none left
    assert all("DELETE" in sql and f"LIMIT {size}" in sql for sql in statements)


@pytest.mark.django_db(databases="__all__")
def test_clearsessions_command_uses_the_engine(alias: str) -> None:
    from django.core.management import call_command

    storage = SQLStorage.get()
    storage.create(make_record("gone", expires_in=-5))
    storage.create(make_record("here"))
    call_command("clearsessions")
    assert Session.objects.using(alias).filter(key=storage.prefix + "here").exists()
    assert not Session.objects.using(alias).filter(key=storage.prefix + "gone").exists()


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_database_errors_are_not_update_errors() -> None:
    """A lock timeout is the database's error, not "the session was deleted"."""
    with sql_on("postgres"):
        session = SessionStore()
        session["a"] = 1
        session.save()
        stored_id = SQLStorage.get().prefix + keys.storage_id(session.session_key)
        locked = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:
            from django.db import transaction

            try:
                with transaction.atomic(using="postgres"):
                    Session.objects.using("postgres").select_for_update().get(key=stored_id)
                    locked.set()
                    release.wait(10)
            finally:
                connections.close_all()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(10)
            with connections["postgres"].cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            session["a"] = 2
            with pytest.raises(OperationalError) as raised:
                session.save()
            assert not isinstance(raised.value, UpdateError)
        finally:
            release.set()
            holder.join()
            with connections["postgres"].cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
        assert SessionStore(session.session_key)["a"] == 1


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_lost_connection_is_an_error_not_an_empty_session() -> None:
    """The store going away mid-request raises; it is never taken for "no session"."""
    import psycopg

    from django_azure_sessions import SessionStoreUnavailable

    with sql_on("postgres"):
        session = SessionStore()
        session["a"] = 1
        session.save()
        connection = connections["postgres"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        db = connection.settings_dict
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
        ) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        broken = SessionStore(session.session_key)
        with pytest.raises(SessionStoreUnavailable):
            broken.load()
        assert broken.session_key == session.session_key  # not logged out
        connection.close()  # what Django does at the end of the failed request
        assert SessionStore(session.session_key)["a"] == 1


@pytest.mark.django_db(databases="__all__")
def test_a_shorter_prefix_does_not_list_another_sites_sessions() -> None:
    with override_settings(AZURE_SESSIONS={"KEY_PREFIX": "shop", "SQL": {"DATABASE": "default"}}):
        other = SessionStore()
        other["a"] = 1
        other.save()
    with override_settings(AZURE_SESSIONS={"KEY_PREFIX": "sho", "SQL": {"DATABASE": "default"}}):
        mine = SessionStore()
        mine["a"] = 1
        mine.save()
        listed = {record.key for record in SQLStorage.get().page(limit=1000).records}
    assert listed == {keys.storage_id(mine.session_key)}
