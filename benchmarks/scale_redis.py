"""The Redis engine at scale: memory per session beside its peers, user-index cleanup, paging.

Each figure comes from a ``redis-server`` of its own (no persistence, on a free port), so that
``INFO memory``'s ``used_memory`` before and after filling it is what the sessions cost:

- memory per session, the user index included, for this engine, django-redis-sessions and
  Django's cache engine over django-redis, each filling a fresh server with the same sessions:
  ``harness.PAYLOAD`` as it is (all of one user, whose index holds every session), and with a
  user of its own each (an index per session, as where users have one session each);
- ``clear_expired()`` of the user-index entries of expired sessions beside live ones, with a
  ``Sweep`` (what ``clearsessions`` runs); every live entry must stay;
- the admin's listing, page 50 against page 1, at 1,000,000 session keys (``paging.py``).
"""

from __future__ import annotations

import datetime
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from .harness import PAYLOAD
from .paging import PAGE_SIZE, free_port, start_server
from .scale import Check

SIZES = {
    "small": {"memory": 2_000, "expired": 2_000, "live": 200, "paging": 20_000},
    "full": {"memory": 100_000, "expired": 200_000, "live": 20_000, "paging": 1_000_000},
}
PAGES = 50
LIFETIME = datetime.timedelta(seconds=2)  # of the expired sessions of the cleanup
LATER = datetime.timedelta(days=14)
DATA = b"~1" + bytes(360)  # about the size of the benchmark payload's encoded data
MEMORY_TARGET = 1.1  # this engine / django-redis-sessions
PAGING_TARGET = 1.5  # page 50 / page 1


@contextmanager
def private_redis() -> Iterator[str]:
    """A fresh ``redis-server`` on a free port, stopped on exit: its URL."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="das-scale-")
    server = start_server(port, directory)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def used_memory(url: str) -> int:
    import redis

    with redis.Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


def fill(store: type[Any], count: int, users: bool) -> None:
    """``count`` sessions holding ``PAYLOAD``; with ``users``, each of a user of its own."""
    for n in range(count):
        session = store()
        session.update(PAYLOAD)
        if users:
            session["_auth_user_id"] = str(100_000 + n)
        session.save()


Fill = Callable[[int, bool], None]


def _ours(url: str) -> Fill:
    from django_azure_sessions.backends.redis import SessionStore

    def run(count: int, users: bool) -> None:
        with override_settings(AZURE_SESSIONS={"REDIS": {"URL": url}}):
            fill(SessionStore, count, users)
            SessionStore.get_storage().close()

    return run


def _redis_sessions(url: str) -> Fill:
    import redis_sessions.session
    from redis_sessions import settings as redis_sessions_settings

    clients = redis_sessions.session.RedisServer._RedisServer__redis  # type: ignore[attr-defined]

    def run(count: int, users: bool) -> None:
        # django-redis-sessions reads its settings at import and keeps one client per kind.
        redis_sessions_settings.SESSION_REDIS_URL = url
        redis_sessions_settings.SESSION_REDIS_PREFIX = "session"
        clients.clear()
        fill(redis_sessions.session.SessionStore, count, users)
        clients.clear()

    return run


def _django_cache(url: str) -> Fill:
    from django.conf import settings
    from django.contrib.sessions.backends.cache import SessionStore
    from django.core.cache import caches

    def run(count: int, users: bool) -> None:
        cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}
        with override_settings(
            CACHES={**settings.CACHES, "sessions": cache}, SESSION_CACHE_ALIAS="sessions"
        ):
            fill(SessionStore, count, users)
            caches["sessions"].close()

    return run


CONTENDERS = {
    "django-azure-sessions": _ours,
    "django-redis-sessions": _redis_sessions,
    "django cache (django-redis)": _django_cache,
}


def memory_per_session(count: int, users: bool) -> dict[str, float]:
    """Bytes of ``used_memory`` per session for each contender, each on a fresh server."""
    found = {}
    for name, contender in CONTENDERS.items():
        with private_redis() as url:
            before = used_memory(url)
            contender(url)(count, users)
            found[name] = (used_memory(url) - before) / count
    return found


def cleanup(expired: int, live: int, deleted: bool) -> tuple[float, int, int, int]:
    """Seconds ``clear_expired()`` took with a Sweep, entries it removed, batches it reported,
    and live sessions whose index entry went missing. The ``expired`` sessions expire, or with
    ``deleted`` are deleted (signed out) long before their expiry: their entries are then
    found by reading whether each session still exists."""
    from django_azure_sessions.backends.redis import RedisStorage
    from django_azure_sessions.core.storage import Record, Sweep, utcnow

    with private_redis() as url, override_settings(AZURE_SESSIONS={"REDIS": {"URL": url}}):
        storage = RedisStorage.get()
        assert isinstance(storage, RedisStorage)
        live_ids = []
        # Each live session's user also has expired ones: alone, a user's index would expire
        # with its last entry, and leave clear_expired() nothing to do. A user's sessions are
        # created one after the other: a later index write would prune the entries past their
        # score itself.
        per_user = expired // live
        n = 0
        for user in map(str, range(live)):
            for _ in range(per_user):
                soon = utcnow() + (LATER if deleted else LIFETIME)
                storage.create(Record(f"{n:064x}", DATA, soon, user))
                if deleted:
                    storage.delete(f"{n:064x}")
                n += 1
            key = f"{n:064x}"
            storage.create(Record(key, DATA, utcnow() + LATER, user))
            live_ids.append((user, key))
            n += 1
        # An index entry is kept until twice its session's remaining lifetime is past.
        time.sleep(0 if deleted else 2 * LIFETIME.total_seconds() + 1)
        batches = []
        started = time.perf_counter()
        removed = storage.clear_expired(Sweep(progress=batches.append))
        seconds = time.perf_counter() - started
        missing = 0
        for user, key in live_ids:
            if [r.key for r in storage.user_records(user)] != [key]:
                missing += 1
        storage.close()
    return seconds, removed, len(batches), missing


def paging(count: int) -> tuple[float, float]:
    """Median milliseconds of page 1 and of pages 45-50, following the cursors."""
    from django_azure_sessions.backends.redis import RedisStorage

    from . import paging as bench

    with (
        private_redis() as url,
        override_settings(AZURE_SESSIONS={"KEY_PREFIX": bench.PREFIX, "REDIS": {"URL": url}}),
    ):
        storage = RedisStorage.get()
        bench.fill(storage, count)
        firsts, lasts = [], []
        for _ in range(3):
            timings = bench.walk(storage, PAGES, budget=120)
            firsts.append(timings[0][1])
            lasts += [seconds for number, seconds, _ in timings if number > PAGES - 6]
        storage.close()
    return statistics.median(firsts) * 1000, statistics.median(lasts) * 1000


def measure(size: str) -> list[Check]:
    sizes = SIZES[size]
    checks = []
    count = sizes["memory"]
    for users, who in ((False, "all of one user"), (True, "a user each")):
        memory = memory_per_session(count, users)
        ours = memory["django-azure-sessions"]
        ratio = ours / memory["django-redis-sessions"]
        checks.append(
            Check(
                f"Redis memory per session, user index included ({count:,} sessions, {who}): "
                "engine / django-redis-sessions",
                f"{ratio:.2f}x ("
                + ", ".join(f"{name} {value:,.0f} B" for name, value in memory.items())
                + f"; engine / Django's cache engine "
                f"{ours / memory['django cache (django-redis)']:.2f}x)",
                f"<= {MEMORY_TARGET}x",
                ratio <= MEMORY_TARGET,
            )
        )
    expired, live = sizes["expired"], sizes["live"]
    for deleted, how in ((False, "expired"), (True, "signed out (deleted) before expiry")):
        seconds, removed, batches, missing = cleanup(expired, live, deleted)
        wanted = expired // live * live
        checks.append(
            Check(
                f"Redis user-index cleanup with a Sweep, {wanted:,} sessions {how} beside "
                f"{live:,} live ones (their users')",
                f"{seconds:.2f} s ({removed / seconds:,.0f} entries/s, {removed:,} removed in "
                f"{batches} batches, {missing} live entries lost)",
                f"all {wanted:,} removed, none lost",
                removed == wanted and missing == 0,
            )
        )
    first, fiftieth = paging(sizes["paging"])
    ratio = fiftieth / first
    checks.append(
        Check(
            f"Redis admin listing at {sizes['paging']:,} keys ({PAGE_SIZE} a page): pages "
            f"{PAGES - 5}-{PAGES} / page 1",
            f"{ratio:.2f}x (page 1 {first:.1f} ms, pages {PAGES - 5}-{PAGES} {fiftieth:.1f} ms)",
            f"<= {PAGING_TARGET}x",
            ratio <= PAGING_TARGET,
        )
    )
    return checks
