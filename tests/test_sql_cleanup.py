"""The SQL engine's cleanup on SQLite, PostgreSQL and MariaDB, and the indexes it relies on."""

from __future__ import annotations

import datetime

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from django_azure_sessions.backends.sql import SQLStorage
from django_azure_sessions.core.storage import Sweep, utcnow
from django_azure_sessions.models import Session

BATCH = 7
EXPIRED, LIVE = 30, 12


@pytest.fixture(params=["default", "postgres", "mariadb"])
def alias(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["t1:", ""], ids=["prefix", "no-prefix"])
def storage(
    alias: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> SQLStorage:
    """The engine going by the expires index (on PostgreSQL too: see the walk's tests)."""
    monkeypatch.setattr(SQLStorage, "_walk", lambda *args: None)
    return SQLStorage(alias, request.param, BATCH)


def fill(storage: SQLStorage, prefix: str, expired: int, live: int, data: bytes = b"x") -> None:
    now = utcnow()

    def row(key: str, expires_in: float) -> Session:
        expires = now + datetime.timedelta(seconds=expires_in)
        return Session(key=prefix + key, data=data, expires=expires, created=now, updated=now)

    rows = [row(f"dead{i:04d}", -1 - i) for i in range(expired)]
    rows += [row(f"live{i:04d}", 3600 + i) for i in range(live)]
    Session.objects.using(storage.alias).bulk_create(rows)


def remaining(storage: SQLStorage) -> list[str]:
    return sorted(Session.objects.using(storage.alias).values_list("key", flat=True))


def live_keys(prefix: str, live: int = LIVE) -> list[str]:
    return [f"{prefix}live{i:04d}" for i in range(live)]


@pytest.mark.django_db(databases="__all__")
def test_removes_every_expired_row_and_keeps_every_live_one(storage: SQLStorage) -> None:
    fill(storage, storage.prefix, EXPIRED, LIVE)
    if storage.prefix:  # another site's expired rows in the same table are not this one's
        fill(storage, "t2:", 3, 0)
    assert storage.count_expired() == EXPIRED
    seen: list[int] = []
    with CaptureQueriesContext(connections[storage.alias]) as queries:
        assert storage.clear_expired(Sweep(progress=seen.append)) == EXPIRED
    assert seen == [7, 14, 21, 28, 30]  # the running total after each batch
    assert len(queries) == 5  # one statement a batch, the last one short
    others = [f"t2:dead{i:04d}" for i in range(3)] if storage.prefix else []
    assert remaining(storage) == sorted(live_keys(storage.prefix) + others)
    assert storage.count_expired() == 0
    assert storage.clear_expired() == 0


@pytest.mark.django_db(databases="__all__")
def test_a_stopped_sweep_leaves_the_rest_to_the_next_run(storage: SQLStorage) -> None:
    fill(storage, storage.prefix, EXPIRED, LIVE)
    sweep = Sweep(max_runtime=3600)

    def stop(removed: int) -> None:
        sweep.stop_at = 0  # out of time once the first batch is in

    sweep.progress = stop
    assert storage.clear_expired(sweep) == BATCH
    assert storage.count_expired() == EXPIRED - BATCH
    assert storage.clear_expired(Sweep()) == EXPIRED - BATCH
    assert remaining(storage) == live_keys(storage.prefix)


@pytest.mark.django_db(databases="__all__")
def test_the_orm_path_of_other_vendors(storage: SQLStorage) -> None:
    fill(storage, storage.prefix, EXPIRED, LIVE)
    storage.vendor = "oracle"
    assert storage.count_expired() == EXPIRED
    assert storage.clear_expired() == EXPIRED
    assert remaining(storage) == live_keys(storage.prefix)


@pytest.mark.django_db(databases="__all__")
def test_the_prefix_is_matched_literally(alias: str) -> None:
    """``_`` and ``%`` in a prefix are not wildcards; other sites' rows stay."""
    storage = SQLStorage(alias, "a_%:", BATCH)
    fill(storage, "a_%:", 3, 1)
    fill(storage, "ab%:", 3, 0)
    fill(storage, "a_x:", 3, 0)
    assert storage.count_expired() == 3
    assert storage.clear_expired() == 3
    assert len(remaining(storage)) == 7


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("prefix", ["t1:", ""])
def test_postgresql_walks_the_table_when_most_rows_expired(prefix: str) -> None:
    """A backlog is removed in page order, a few pages a statement, by the same rules."""
    storage = SQLStorage("postgres", prefix, BATCH)
    fill(storage, prefix, 300, 60, data=b"x" * 1000)  # about 7 rows a page
    fill(storage, "t2:", 3, 0)
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f"ANALYZE {storage.table}")
    where, _, extra = storage._expired_sql()
    walk = storage._walk(where, extra)
    assert walk is not None
    pages = walk[0]
    assert pages > 40
    sweep = Sweep(max_runtime=3600)

    def stop(removed: int) -> None:
        sweep.stop_at = 0

    sweep.progress = stop
    # A page a statement (the step depends on the table's past: dead space counts).
    with CaptureQueriesContext(connections["postgres"]) as queries:
        first = storage._clear_by_pages(where, extra, pages, 1, sweep)
    assert first < 300
    assert len(queries) <= max(pages, 1)
    assert all("ctid >=" in q["sql"] for q in queries)
    mine = 300 + (0 if prefix else 3)
    assert storage.count_expired() == mine - first
    assert storage.clear_expired() == mine - first
    expected = live_keys(prefix, 60) + ([f"t2:dead{i:04d}" for i in range(3)] if prefix else [])
    assert remaining(storage) == sorted(expected)


@pytest.mark.django_db(databases="__all__")
def test_postgresql_goes_by_the_index_when_few_rows_expired() -> None:
    storage = SQLStorage("postgres", "t1:", BATCH)
    fill(storage, "t1:", 5, 200)
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f"ANALYZE {storage.table}")
    assert storage._walk(*storage._expired_sql()[::2]) is None
    with CaptureQueriesContext(connections["postgres"]) as queries:
        assert storage.clear_expired() == 5
    assert not [q for q in queries if "ctid >=" in q["sql"]]


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_no_pattern_index_on_postgresql_before_or_after_the_migration() -> None:
    """Django's ``_like`` copies of the text indexes are gone, the primary key's included,
    on a new database and on one migrated from 0002."""
    connection = connections["postgres"]
    app = "django_azure_sessions"

    def indexes() -> dict[str, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                [Session._meta.db_table],
            )
            return dict(cursor.fetchall())

    assert not [d for d in indexes().values() if "pattern_ops" in d]
    executor = MigrationExecutor(connection)
    executor.migrate([(app, "0002_session_device")])
    try:
        assert [d for d in indexes().values() if "pattern_ops" in d]  # what 0003 drops
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes(app))
    found = indexes()
    assert not [d for d in found.values() if "pattern_ops" in d]
    assert {"django_azure_sessions_expires", "django_azure_sessions_user_id"} <= set(found)
    assert len(found) == 3  # and the primary key's
