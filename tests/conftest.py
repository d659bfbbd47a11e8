"""Test fixtures: real services only. A service the suite needs that is down is a failure."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connections

pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.engines",
    "tests.fixtures.proxy",
    "tests.fixtures.redis",
    "tests.fixtures.sql_proxy",
    "tests.fixtures.table",
]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    redis = urlsplit(settings.REDIS_URL)
    needed = {
        "PostgreSQL": (
            settings.DATABASES["postgres"]["HOST"],
            settings.DATABASES["postgres"]["PORT"],
        ),
        "MariaDB": (settings.DATABASES["mariadb"]["HOST"], settings.DATABASES["mariadb"]["PORT"]),
        "Redis": (redis.hostname or "127.0.0.1", redis.port or 6379),
    }
    down = [
        f"{name} at {host}:{port}"
        for name, (host, port) in needed.items()
        if not _reachable(host, int(port))
    ]
    if down:
        pytest.exit(
            "The test suite runs against real services, and these are not reachable: "
            + ", ".join(down)
            + ". Start them (see docs/testing.md) and run again.",
            returncode=3,
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's, closing this thread's connections before the test databases go.

    Django's own ``TestCase.tearDownClass`` closes them, pytest-django does not: a mirror
    alias (``postgres_proxy``) left connected to ``test_das_...`` made PostgreSQL refuse to
    drop it ("being accessed by other users"), and the database stayed behind.
    """
    yield
    with django_db_blocker.unblock():
        connections.close_all()
