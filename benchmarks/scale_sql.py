"""The SQL engine at scale, on PostgreSQL: ``python -m benchmarks.run scale sql``.

Side by side in one run, on the benchmark database (``das_benchmarks``):

- cleanup of 200,000 expired + 20,000 live rows: the engine's ``clear_expired()`` against
  Django's db engine's ``SessionStore.clear_expired()`` on its own ``django_session`` table
  holding the same rows (median of 5 rounds), every live row kept, and, for reference, one
  round of the engine going by the expires index alone (what it does when few rows expired);
- the same at 1,000,000 expired + 100,000 live (median of 3), each cleanup in a fresh
  process, with its peak RSS;
- the table plus its indexes for the same sessions of the benchmark payload, each stored as
  its engine stores it (the engine's compressed record; Django's signed base64);
- the engine's load + save cycle against a bare table's ``SELECT`` + ``UPDATE`` (psycopg).

Rows are written by PostgreSQL itself (``INSERT ... SELECT FROM generate_series``) from one
row that each engine wrote, in the order sessions are created: the oldest expire first. Each
table is then vacuumed and analysed, as autovacuum leaves a table that has been in use, and
each cleanup starts just after a checkpoint.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from .scale import Check, peak_rss_mb

SIZES = {"full": 1, "small": 50}
ENGINE_TABLE = "django_azure_sessions"
DJANGO_TABLE = "django_session"


def _connection() -> Any:
    from django.db import connections

    connection = connections["default"]
    connection.ensure_connection()
    return connection


def _execute(sql: str, params: Any = ()) -> Any:
    with _connection().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _templates() -> tuple[tuple[Any, ...], str]:
    """One row of each engine, written by the engine from the benchmark payload."""
    from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore

    from django_azure_sessions.backends.sql import SessionStore as SQLStore

    from .harness import PAYLOAD

    for store in (SQLStore(), DjangoDBStore()):
        store.update(PAYLOAD)
        store.save()
    (engine,) = _execute(f"SELECT data, user_id, device FROM {ENGINE_TABLE} LIMIT 1")
    ((django,),) = _execute(f"SELECT session_data FROM {DJANGO_TABLE} LIMIT 1")
    return engine, django


def _fill(expired: int, live: int, templates: tuple[tuple[Any, ...], str]) -> None:
    """Both tables emptied, then ``expired`` + ``live`` rows each, the oldest first."""
    engine, django = templates
    total = expired + live
    _execute(f"TRUNCATE {ENGINE_TABLE}, {DJANGO_TABLE}")
    # Row i expires (expired - i) seconds ago: the expired first, then the live.
    expires = "now() - (%s - i) * interval '1 second' + interval '1 hour' * (i > %s)::int"
    _execute(
        f"INSERT INTO {ENGINE_TABLE} (key, data, expires, user_id, version, created, updated, "
        f"device) SELECT 'bench:' || encode(sha256(i::text::bytea), 'hex'), %s, {expires}, "
        "%s, 1, now(), now(), %s FROM generate_series(1, %s) AS i",
        [engine[0], expired, expired, engine[1], engine[2], total],
    )
    _execute(
        f"INSERT INTO {DJANGO_TABLE} (session_key, session_data, expire_date) "
        f"SELECT md5(i::text), %s, {expires} FROM generate_series(1, %s) AS i",
        [django, expired, expired, total],
    )
    for table in (ENGINE_TABLE, DJANGO_TABLE):
        _execute(f"VACUUM ANALYZE {table}")


def _left(table: str, column: str) -> tuple[int, int]:
    """(rows left, live rows among them)."""
    ((left, live),) = _execute(
        f"SELECT count(*), count(*) FILTER (WHERE {column} > now()) FROM {table}"
    )
    return left, live


def _clear(which: str) -> float:
    from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore

    from django_azure_sessions.backends.sql import SQLStorage

    class ByIndex(SQLStorage):
        def _walk(self, where: str, extra: list[Any]) -> None:
            return None

    clear = {
        "engine": lambda: SQLStorage.get().clear_expired(),
        "engine by the index": lambda: ByIndex.from_settings().clear_expired(),
        "django": DjangoDBStore.clear_expired,
    }[which]
    # Each starts just after a checkpoint, so each pays the full-page images of the pages it
    # changes first, rather than whichever runs when the fill's checkpoint ends.
    _execute("CHECKPOINT")
    start = time.perf_counter()
    clear()
    return time.perf_counter() - start


def _cleanup(expired: int, live: int, rounds: int, templates: Any) -> list[Check]:
    times: dict[str, list[float]] = {"engine": [], "django": []}
    kept = True
    for n in range(rounds):
        _fill(expired, live, templates)
        for which in ("engine", "django") if n % 2 == 0 else ("django", "engine"):
            times[which].append(_clear(which))
        kept &= _left(ENGINE_TABLE, "expires") == (live, live)
        kept &= _left(DJANGO_TABLE, "expire_date") == (live, live)
    engine, django = (statistics.median(times[w]) for w in ("engine", "django"))
    # What a run takes where few rows have expired, on the same rows, for reference.
    _fill(expired, live, templates)
    by_index, django_once = _clear("engine by the index"), _clear("django")
    kept &= _left(ENGINE_TABLE, "expires") == (live, live)
    what = f"SQL cleanup, {expired:,} expired + {live:,} live: engine / Django's db engine"
    return [
        Check(
            what.replace("engine /", "engine by the expires index alone /"),
            f"{by_index / django_once:.2f}x (engine {by_index:.2f} s, "
            f"django {django_once:.2f} s, one round)",
            "",
            None,
        ),
        Check(
            what,
            f"{engine / django:.2f}x (engine {engine:.2f} s, django {django:.2f} s, "
            f"median of {rounds})",
            "<= 1.0x",
            engine <= django,
        ),
        Check(f"SQL cleanup, {expired:,} expired: every live row kept", str(kept), "", kept),
    ]


def _cleanup_in_processes(expired: int, live: int, rounds: int, templates: Any) -> list[Check]:
    """Cleanups each in a process of its own, so the peak RSS is the cleanup's."""
    from django.db import connections

    name = connections["default"].settings_dict["NAME"]
    found: dict[str, list[dict[str, float]]] = {"engine": [], "django": []}
    kept = True
    for n in range(rounds):
        _fill(expired, live, templates)
        for which in ("engine", "django") if n % 2 == 0 else ("django", "engine"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.scale_sql", which, name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            found[which].append(json.loads(out.splitlines()[-1]))
        kept &= _left(ENGINE_TABLE, "expires") == (live, live)
        kept &= _left(DJANGO_TABLE, "expire_date") == (live, live)
    engine, django = (statistics.median(r["seconds"] for r in found[w]) for w in found)
    rss = {w: max(r["rss"] for r in found[w]) for w in found}
    start = {w: max(r["rss_before"] for r in found[w]) for w in found}
    what = f"SQL cleanup, {expired:,} expired + {live:,} live"
    return [
        Check(
            f"{what}: engine / Django's db engine",
            f"{engine / django:.2f}x (engine {engine:.2f} s, django {django:.2f} s, "
            f"median of {rounds})",
            "<= 1.0x",
            engine <= django,
        ),
        Check(
            f"{what}: peak RSS of the process",
            f"engine {rss['engine']:.0f} MB (at start {start['engine']:.0f} MB), "
            f"django {rss['django']:.0f} MB (at start {start['django']:.0f} MB)",
            "",
            None,
        ),
        Check(f"{what}: every live row kept", str(kept), "", kept),
    ]


def _sizes(count: int, templates: Any) -> list[Check]:
    _fill(0, count, templates)
    ((engine, django),) = _execute(
        "SELECT pg_total_relation_size(%s), pg_total_relation_size(%s)",
        [ENGINE_TABLE, DJANGO_TABLE],
    )
    return [
        Check(
            f"PostgreSQL table + indexes for {count:,} sessions: engine / django_session",
            f"{engine / django:.2f}x (engine {engine / count:.0f} B, "
            f"django {django / count:.0f} B per session)",
            "<= 1.0x",
            engine <= django,
        )
    ]


def _cycle(size: str) -> list[Check]:
    from django_azure_sessions.backends.sql import SessionStore as SQLStore

    from . import harness
    from .contenders_sql import BASELINE, RawPsycopg, SessionStoreContender

    _execute(f"TRUNCATE {ENGINE_TABLE}")
    small = size == "small"
    contenders = [SessionStoreContender(BASELINE, SQLStore), RawPsycopg()]
    results = harness.run(
        contenders,
        rounds=3 if small else 7,
        iterations=100 if small else 300,
        warmup=20 if small else 50,
        operations=["cycle"],
    )
    medians = results.medians()
    engine, raw = medians[BASELINE, "cycle"], medians["raw psycopg", "cycle"]
    return [
        Check(
            "SQL load + save cycle: engine / bare table SELECT + UPDATE (psycopg)",
            f"{engine / raw:.2f}x (engine {engine:.0f} us, raw {raw:.0f} us)",
            "<= 1.5x",
            engine <= 1.5 * raw,
        )
    ]


def measure(size: str) -> list[Check]:
    from django.test.utils import setup_databases, teardown_databases

    divisor = SIZES[size]
    databases = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        templates = _templates()
        checks = _cleanup(200_000 // divisor, 20_000 // divisor, 5, templates)
        checks += _cleanup_in_processes(1_000_000 // divisor, 100_000 // divisor, 3, templates)
        checks += _sizes(200_000 // divisor, templates)
        checks += _cycle(size)
        return checks
    finally:
        _execute(f"TRUNCATE {ENGINE_TABLE}, {DJANGO_TABLE}")
        teardown_databases(databases, verbosity=0)


def _child(which: str, name: str) -> None:
    """``python -m benchmarks.scale_sql engine|django DATABASE``: one cleanup, as JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django
    from django.db import connections

    django.setup()
    connections["default"].settings_dict["NAME"] = name
    _connection()
    before = peak_rss_mb()
    seconds = _clear(which)
    print(json.dumps({"seconds": seconds, "rss": peak_rss_mb(), "rss_before": before}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
