"""Test fixtures: real services only. A service the suite needs that is down is a failure."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings

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
