"""Warm workers: the first session save + load of a fresh process, with warm-up on and off.

Each sample is a new Python process (``python -m benchmarks.scale_warm <engine> <warm>``) that
configures Django, runs ``django.setup()`` (where ``AZURE_SESSIONS["WARM_UP"]`` builds the
store's client), then times its first save and load of a session, and the next one's. The
figure is the median over rounds, the two settings taking turns. SQL uses a SQLite file that
the parent migrates once; Redis the machine's server (``DAS_REDIS_URL``); Table an Azurite
that the parent starts (``node_modules/.bin/azurite-table``; without it, Table is skipped).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .scale import Check

ROUNDS = {"small": 3, "full": 9}
TARGET_MS = 20.0  # the first Redis save + load, warm-up on
ENGINES = ("redis", "sql", "table")
TABLE_ENV = "DAS_WARM_TABLE"  # the children's Azurite connection string


def configure(engine: str, warm: bool, database: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-secret-key-benchmark-secret-key",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django_azure_sessions",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}},
        SESSION_ENGINE=f"django_azure_sessions.backends.{engine}",
        AZURE_SESSIONS={
            "KEY_PREFIX": "bench-warm:",
            "REDIS": {"URL": os.environ.get("DAS_REDIS_URL", "redis://127.0.0.1:6379/0")},
            "WARM_UP": warm,
            **(
                {"TABLE": {"CONNECTION_STRING": os.environ[TABLE_ENV]}}
                if engine == "table"
                else {}
            ),
        },
    )
    django.setup()


def child(engine: str, warm: bool, database: str) -> dict[str, float]:
    """Milliseconds: django.setup(), the first save + load, and the second."""
    started = time.perf_counter()
    configure(engine, warm, database)
    setup = time.perf_counter() - started
    from importlib import import_module

    from django.conf import settings

    from .harness import PAYLOAD

    store = import_module(settings.SESSION_ENGINE).SessionStore
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        session = store()
        session.update(PAYLOAD)
        session.save()
        assert store(session.session_key).load()["cart"]
        timings.append(time.perf_counter() - started)
        session.delete()
    return {"setup": setup * 1000, "first": timings[0] * 1000, "second": timings[1] * 1000}


def sample(engine: str, warm: bool, database: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_warm", engine, str(int(warm)), database],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": ""},
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def migrate(database: str) -> None:
    script = (
        "import sys; from benchmarks.scale_warm import configure; "
        "configure('sql', False, sys.argv[1]); "
        "from django.core.management import call_command; call_command('migrate', verbosity=0)"
    )
    subprocess.run(
        [sys.executable, "-c", script, database],
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": ""},
    )


@contextmanager
def azurite(directory: str) -> Iterator[bool]:
    """An in-memory Azurite for the children (``TABLE_ENV``); False if it is not installed."""
    from tests.fixtures.table import AZURITE, Azurite

    if not AZURITE.exists():
        yield False
        return
    server = Azurite(Path(directory) / "azurite")
    server.start()
    os.environ[TABLE_ENV] = server.connection_string
    try:
        yield True
    finally:
        os.environ.pop(TABLE_ENV, None)
        server.stop()


def measure(size: str) -> list[Check]:
    rounds = ROUNDS[size]
    results: dict[tuple[str, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="das-warm-") as directory:
        database = os.path.join(directory, "sessions.sqlite3")
        migrate(database)
        with azurite(directory) as table:
            engines = ENGINES if table else ENGINES[:2]
            if table:
                sample("table", False, database)  # creates the table
            for _ in range(rounds):
                for engine in engines:
                    for warm in (False, True):
                        found = sample(engine, warm, database)
                        results.setdefault((engine, warm), []).append(found)
    checks = []
    for engine in engines:
        med: dict[bool, dict[str, float]] = {
            warm: {
                part: statistics.median(s[part] for s in results[engine, warm])
                for part in ("setup", "first", "second")
            }
            for warm in (False, True)
        }
        on, off = med[True], med[False]
        figure = (
            f"{on['first']:.1f} ms warm-up on, {off['first']:.1f} ms off (then "
            f"{on['second']:.2f} ms; django.setup() {on['setup']:.0f} ms on, "
            f"{off['setup']:.0f} ms off; median of {rounds} processes)"
        )
        if engine == "redis":
            met: bool | None = on["first"] <= TARGET_MS
            target = f"<= {TARGET_MS:.0f} ms"
        else:
            met, target = None, ""
        checks.append(
            Check(f"{engine}: first save + load after django.setup()", figure, target, met)
        )
    return checks


def main(argv: list[str]) -> Any:
    engine, warm, database = argv
    print(json.dumps(child(engine, warm == "1", database)))


if __name__ == "__main__":
    main(sys.argv[1:])
