"""The lost-update scenario every engine is tested with, and that Django's engines fail."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections

THREADS = 16
KEYS_PER_THREAD = 10


def write_concurrently(store: type[Any], session_key: str) -> dict[str, Any]:
    """16 threads, started together, each set 10 distinct keys in one session, each key
    through a new ``store(session_key)``; return the session's data afterwards.
    """
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            barrier.wait()
            for index in range(KEYS_PER_THREAD):
                session = store(session_key)
                session[f"t{number}-k{index}"] = index
                session.save()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return store(session_key).load()  # type: ignore[no-any-return]


def expected_keys() -> set[str]:
    return {f"t{t}-k{i}" for t in range(THREADS) for i in range(KEYS_PER_THREAD)}
