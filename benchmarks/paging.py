"""The admin's listing on a big Redis: page 1 and page 50 with 1,000,000 session keys.

``python -m benchmarks.paging [--keys N] [--pages N] [--budget SECONDS]`` starts a
``redis-server`` of its own on a free port (no persistence), fills it with ``--keys`` copies
of one real session's stored value, then times ``RedisStorage.page()`` for each page while
following the cursors, up to ``--pages`` (admin page size, 100 records). It stops early if
``--budget`` seconds of paging have gone, and stops its server in every case.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PAGE_SIZE = 100
PREFIX = "bench-paging:"
TTL_MS = 14 * 24 * 3600 * 1000
FILL_BATCH = 10_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(port: int, directory: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, "--logfile", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    for _ in range(100):
        try:
            with redis.Redis(port=port) as client:
                client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")


def configure(port: int) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-secret-key-benchmark-secret-key",
        USE_TZ=True,
        INSTALLED_APPS=["django_azure_sessions", "django.contrib.sessions"],
        SESSION_ENGINE="django_azure_sessions.backends.redis",
        AZURE_SESSIONS={
            "KEY_PREFIX": PREFIX,
            "REDIS": {"URL": f"redis://127.0.0.1:{port}/0"},
        },
    )
    django.setup()


def fill(storage: Any, count: int) -> float:
    """``count`` session keys holding one real session's stored value; the seconds it took."""
    from django_azure_sessions.backends.redis import SessionStore
    from django_azure_sessions.core import keys

    session = SessionStore()
    session["user"] = "bench"
    session.save()
    client = storage.client
    value = client.get(storage.session_key(keys.storage_id(session.session_key)))
    assert value is not None
    started = time.perf_counter()
    for start in range(0, count, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + FILL_BATCH, count)):
            pipe.execute_command("SET", storage.session_key(f"{n:064x}"), value, "PX", TTL_MS)
        pipe.execute()
    return time.perf_counter() - started


def walk(storage: Any, pages: int, budget: float) -> list[tuple[int, float, int]]:
    """(page number, seconds, records) for each page, following the cursors."""
    timings = []
    cursor = None
    deadline = time.monotonic() + budget
    for number in range(1, pages + 1):
        started = time.perf_counter()
        page = storage.page(cursor, limit=PAGE_SIZE)
        timings.append((number, time.perf_counter() - started, len(page.records)))
        cursor = page.next_cursor
        if cursor is None or time.monotonic() > deadline:
            break
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of paging at most")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 2
    port = free_port()
    directory = tempfile.mkdtemp(prefix="das-paging-")
    server = start_server(port, directory)
    try:
        configure(port)
        from django_azure_sessions.backends.redis import RedisStorage

        storage = RedisStorage.get()
        print(f"filling {args.keys:,} session keys...", flush=True)
        print(f"filled in {fill(storage, args.keys):.1f} s", flush=True)
        timings = walk(storage, args.pages, args.budget)
        for number, seconds, records in timings:
            if number in (1, 2, 10, 25, 50) or number == timings[-1][0]:
                print(f"page {number:3d}: {seconds * 1000:9.1f} ms, {records} records")
        median = statistics.median(seconds for _, seconds, _ in timings)
        print(f"median of {len(timings)} pages: {median * 1000:.1f} ms")
        storage.close()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    sys.exit(main())
