"""What a request gets while the session store is unavailable, by ``ON_UNAVAILABLE``.

The store is a Redis port where nothing listens (every connection refused at once), so the
budget runs out fast; the engines' own tests stall and stop real servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.checks import run_checks
from django.test import AsyncClient, Client, override_settings

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends.redis import SessionStore as RedisSession
from django_azure_sessions.core import keys

from .fixtures.redis import free_port

REDIS = "django_azure_sessions.backends.redis"
OURS = "django_azure_sessions.middleware.SessionMiddleware"
DJANGOS = "django.contrib.sessions.middleware.SessionMiddleware"
COOKIE = "sessionid"


@pytest.fixture
def down() -> Iterator[None]:
    """The Redis engine on a port that refuses every connection, with a 1-second budget."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(
        SESSION_ENGINE=REDIS, AZURE_SESSIONS={"TIMEOUT": 1, "REDIS": {"URL": url}}
    ):
        yield


def degrade(settings: Any) -> None:
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "ON_UNAVAILABLE": "degrade"}


def with_cookie(**kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.cookies[COOKIE] = keys.new_key()
    return client


def test_the_error_names_the_engine_and_store_and_is_logged(
    down: None, caplog: pytest.LogCaptureFixture
) -> None:
    session = RedisSession(keys.new_key())
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable) as raised:
        session.load()
    assert time.monotonic() - started < 2
    assert raised.value.engine == "redis"
    assert "127.0.0.1" in raised.value.store
    assert session.unavailable
    warnings = [r for r in caplog.records if r.name == "django_azure_sessions"]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"


@pytest.mark.parametrize("path", ["/get/", "/set/?a=1", "/noop/"])
def test_raise_answers_503_and_keeps_the_cookie(down: None, path: str) -> None:
    client = with_cookie()
    before = client.cookies[COOKIE].value
    response = client.get(path)
    if path == "/noop/":  # the session was never read: nothing to fail
        assert response.status_code == 200
        return
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert COOKIE not in response.cookies
    assert client.cookies[COOKIE].value == before


def test_a_new_session_that_cannot_be_saved_gets_no_cookie(down: None) -> None:
    response = Client().get("/set/", {"a": "1"})
    assert response.status_code == 503
    assert COOKIE not in response.cookies


def test_raised_in_another_middleware_is_a_503_too(down: None, settings: Any) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.middleware.ReadSessionFirst"]
    # Django turns it into a 500 (which the test client would raise), the middleware a 503.
    assert with_cookie(raise_request_exception=False).get("/noop/").status_code == 503


def test_the_site_503_template_is_used(down: None, settings: Any, tmp_path: Any) -> None:
    (tmp_path / "503.html").write_text("<h1>Back soon</h1>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    response = with_cookie().get("/get/")
    assert response.status_code == 503
    assert response.content == b"<h1>Back soon</h1>"


def test_degrade_serves_an_empty_session_and_writes_nothing(down: None, settings: Any) -> None:
    degrade(settings)
    client = with_cookie()
    before = client.cookies[COOKIE].value
    status = client.get("/status/")
    assert status.status_code == 200
    assert status.json() == {"data": {}, "unavailable": True}
    written = client.get("/set/", {"a": "1"})
    assert written.status_code == 200
    assert COOKIE not in written.cookies  # neither replaced nor deleted
    assert client.cookies[COOKIE].value == before


def test_degrade_gives_a_new_visitor_no_cookie(down: None, settings: Any) -> None:
    degrade(settings)
    response = Client().get("/set/", {"a": "1"})
    assert response.status_code == 200
    assert COOKIE not in response.cookies


def test_degrade_never_deletes_the_stored_session(down: None, settings: Any) -> None:
    degrade(settings)
    session = RedisSession(keys.new_key())
    assert session.load() == {}
    session["a"] = 1
    session.save()
    session.delete()
    session.cycle_key()
    assert session.unavailable


def test_async_raise_and_degrade(down: None, settings: Any) -> None:
    async_to_sync(async_raise_and_degrade)(settings)


async def async_raise_and_degrade(settings: Any) -> None:
    client = AsyncClient()
    client.cookies[COOKIE] = keys.new_key()
    assert (await client.get("/get/")).status_code == 503
    degrade(settings)
    session = RedisSession(keys.new_key())
    assert await session.aload() == {}
    session["a"] = 1
    await session.asave()
    await session.adelete()
    assert session.unavailable


def ids(**overrides: Any) -> set[str]:
    with override_settings(**overrides):
        return {m.id for m in run_checks() if m.id and m.id.startswith("django_azure")}


def test_checks_on_the_middleware(settings: Any) -> None:
    djangos = [DJANGOS if m == OURS else m for m in settings.MIDDLEWARE]
    fine = {"REDIS": {"URL": "redis://127.0.0.1:6379/0"}}
    w003 = "django_azure_sessions.W003"
    assert ids(SESSION_ENGINE=REDIS, MIDDLEWARE=djangos, AZURE_SESSIONS=fine) == {w003}
    assert ids(SESSION_ENGINE=REDIS, AZURE_SESSIONS=fine) == set()
    degraded = {"ON_UNAVAILABLE": "degrade", **fine}
    found = ids(SESSION_ENGINE=REDIS, MIDDLEWARE=djangos, AZURE_SESSIONS=degraded)
    assert found == {"django_azure_sessions.E009"}
    assert ids(SESSION_ENGINE=REDIS, AZURE_SESSIONS=degraded) == set()
    other = "django.contrib.sessions.backends.db"
    assert ids(SESSION_ENGINE=other, MIDDLEWARE=djangos) == set()
