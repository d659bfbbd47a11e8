"""Warm workers: the store's client is built when Django starts, and nothing connects then.

A listening socket that never answers stands in for Redis: whether anything connected is
whether a connection waits to be accepted.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.core.checks import run_checks
from django.test import override_settings

import django_azure_sessions
from django_azure_sessions.backends.redis import RedisStorage
from django_azure_sessions.core.storage import Storage

from .fixtures.redis_stores import storage

ENGINE = "django_azure_sessions.backends.redis"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.3)
        yield sock


def port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except TimeoutError:
        return False
    return True


def ready(listener: socket.socket, **azure_sessions: object) -> Storage | None:
    """Run the app's ``ready()`` with the engine pointed at ``listener``: the storage built,
    if any, whose client (built or not) is as ``ready()`` left it."""
    config = {"REDIS": {"URL": f"redis://127.0.0.1:{port(listener)}/0"}, **azure_sessions}
    with override_settings(SESSION_ENGINE=ENGINE, AZURE_SESSIONS=config):
        Storage.reset()
        apps.get_app_config("django_azure_sessions").ready()
        built = Storage._instances.pop(RedisStorage, None)  # kept from the reset at the exit
    return built


def test_ready_builds_the_client_without_connecting(listener: socket.socket) -> None:
    built = ready(listener)
    assert isinstance(built, RedisStorage)
    assert built._client is not None
    assert not connected(listener)
    built.close()


def test_a_cluster_client_is_not_built_since_building_it_connects(
    listener: socket.socket,
) -> None:
    built = ready(listener, REDIS={"URL": f"redis://127.0.0.1:{port(listener)}", "CLUSTER": True})
    assert isinstance(built, RedisStorage)
    assert built._client is None
    assert not connected(listener)


PROVIDED: list[object] = []


def provider() -> object:
    PROVIDED.append(object())
    raise AssertionError("a credential provider was made at start-up")


def test_a_credential_provider_is_not_made_at_start_up(listener: socket.socket) -> None:
    url = f"redis://127.0.0.1:{port(listener)}/0"
    built = ready(listener, REDIS={"URL": url, "CREDENTIAL_PROVIDER": f"{__name__}.provider"})
    assert isinstance(built, RedisStorage)
    assert built._client is None
    assert PROVIDED == []


def test_warm_up_off_builds_nothing(listener: socket.socket) -> None:
    assert ready(listener, WARM_UP=False) is None
    assert not connected(listener)


def test_a_misconfigured_store_is_left_to_the_checks(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(SESSION_ENGINE=ENGINE, AZURE_SESSIONS={"REDIS": {}}):
        Storage.reset()
        apps.get_app_config("django_azure_sessions").ready()
        assert RedisStorage not in Storage._instances
        assert "warm-up skipped" in caplog.text
        assert "django_azure_sessions.E021" in {m.id for m in run_checks()}


def test_other_engines_are_left_alone(listener: socket.socket) -> None:
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache"):
        assert django_azure_sessions.warm_up() is None


def test_warm_up_must_be_a_bool() -> None:
    with override_settings(AZURE_SESSIONS={"WARM_UP": "yes"}):
        assert "django_azure_sessions.E072" in {m.id for m in run_checks()}


def test_the_hook_connects_and_never_raises(
    listener: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """``warm_up()`` opens the first connection; a store that does not answer is logged."""
    url = f"redis://127.0.0.1:{port(listener)}/0"
    config = {"REDIS": {"URL": url, "RETRIES": 0}, "TIMEOUT": 0.2}
    with override_settings(SESSION_ENGINE=ENGINE, AZURE_SESSIONS=config):
        with caplog.at_level(logging.WARNING, "django_azure_sessions"):
            assert isinstance(django_azure_sessions.warm_up(), RedisStorage)
        assert connected(listener)
        assert "warm up" in caplog.text


def test_the_hook_opens_a_connection_that_serves(redis_engine: type[object]) -> None:
    store = storage()
    before = store.client.info("stats")["total_connections_received"]
    assert django_azure_sessions.warm_up() is store
    assert store.client.info("stats")["total_connections_received"] > before
    received = store.client.info("stats")["total_connections_received"]
    assert store.load("0" * 64) is None  # on the thread's connection, already open
    assert store.client.info("stats")["total_connections_received"] == received


@pytest.mark.parametrize("command", [["check"], ["migrate", "--noinput"]])
def test_management_commands_connect_to_nothing(
    listener: socket.socket, tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "warm_settings.py").write_text(
        textwrap.dedent(f"""
            from tests.settings import *
            DATABASES = {{"default": {{
                "ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "db")!r}}}}}
            DATABASE_ROUTERS = []
            SESSION_ENGINE = {ENGINE!r}
            AZURE_SESSIONS = {{"REDIS": {{"URL": "redis://127.0.0.1:{port(listener)}/0"}}}}
        """)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "warm_settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warm-up skipped" not in result.stderr
    assert not connected(listener)
