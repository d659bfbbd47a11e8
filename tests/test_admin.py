"""The admin pages: browse, inspect and revoke sessions, on each engine's real store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from importlib import import_module
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.signals import session_revoked
from testproject import settings as demo_settings

from .fixtures.stores import every_store
from .fixtures.table import Azurite

pytestmark = pytest.mark.django_db(databases="__all__")

ENGINES = [
    "django_azure_sessions.backends.sql",
    "django_azure_sessions.backends.redis",
    "django_azure_sessions.backends.table",
]
LIST = "/admin/django_azure_sessions/session/"


DEMO_SITE = {
    "INSTALLED_APPS": demo_settings.INSTALLED_APPS,
    "MIDDLEWARE": demo_settings.MIDDLEWARE,
    "TEMPLATES": demo_settings.TEMPLATES,
    "ROOT_URLCONF": demo_settings.ROOT_URLCONF,
    "STATIC_URL": demo_settings.STATIC_URL,
}


@pytest.fixture(params=ENGINES, ids=["sql", "redis", "table"])
def engine(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[type[Any]]:
    """The demo site's admin, with ``SESSION_ENGINE`` set to each engine in turn."""
    with every_store(azurite, SESSION_ENGINE=request.param, **DEMO_SITE):
        yield import_module(request.param).SessionStore


def signed_in(store: type[Any], user_id: str, **data: Any) -> str:
    session = store()
    secrets = {"_auth_user_hash": "secret-hash", "_csrftoken": "csrf-secret"}
    session.update({USER_ID_KEY: user_id, **secrets, **data})
    session.save()
    return session.session_key  # type: ignore[no-any-return]


def staff(*permissions: str) -> Client:
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(
                codename=codename, content_type__app_label="django_azure_sessions"
            )
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser() -> Client:
    user = User.objects.create_superuser(f"admin-{uuid.uuid4().hex[:6]}")
    client = Client()
    client.force_login(user)
    return client


def test_browse_filter_and_inspect(engine: type[Any], superuser: Client) -> None:
    alice = signed_in(engine, "501", cart=["pear", "plum"])
    bob = signed_in(engine, "502")

    index = superuser.get("/admin/").content.decode()
    assert f'href="{LIST}"' in index

    listing = superuser.get(LIST).content.decode()
    for key in (alice, bob):
        assert f"<code>{keys.storage_id(key)[:18]}…</code>" in listing
        assert key not in listing  # the stored id, never the cookie value
    assert engine.__module__ in listing

    mine = superuser.get(LIST, {"user": "501"}).content.decode()
    assert keys.storage_id(alice)[:18] in mine
    assert keys.storage_id(bob)[:18] not in mine
    assert 'value="Revoke all 1 sessions of user 501"' in mine

    detail = superuser.get(f"{LIST}{keys.storage_id(alice)}/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert 'value="Revoke every session of user 501"' in page
    for shown in ("pear", "plum", "501"):
        assert shown in page
    for hidden in ("secret-hash", "_auth_user_hash", "csrf-secret", "_csrftoken"):
        assert hidden not in page
    assert alice not in page


def test_revoke_one_session_and_every_session_of_a_user(
    engine: type[Any], superuser: Client
) -> None:
    first, second = signed_in(engine, "601"), signed_in(engine, "601")
    other = signed_in(engine, "602")
    url = f"{LIST}{keys.storage_id(first)}/revoke/"

    assert superuser.get(url).status_code == 405  # a link never revokes
    response = superuser.post(url)
    assert response.status_code == 302
    assert engine(first).load() == {}
    assert engine(second).load()[USER_ID_KEY] == "601"
    assert superuser.post(url).status_code == 404  # gone

    response = superuser.post(f"{LIST}revoke-user/", {"user": "601"}, follow=True)
    assert "1 sessions of user 601 revoked" in response.content.decode()
    assert engine(second).load() == {}
    assert engine(other).load()[USER_ID_KEY] == "602"


def test_revocations_are_in_the_admin_history(engine: type[Any], superuser: Client) -> None:
    first, second = signed_in(engine, "801"), signed_in(engine, "801")
    lone = signed_in(engine, "802")
    sent: list[tuple[str | None, list[str], str]] = []

    def receive(
        sender: Any, user_id: str | None, stored_ids: list[str], reason: str, **_: Any
    ) -> None:
        sent.append((user_id, sorted(stored_ids), reason))

    session_revoked.connect(receive)
    try:
        superuser.post(f"{LIST}{keys.storage_id(lone)}/revoke/")
        superuser.post(f"{LIST}revoke-user/", {"user": "801"})
    finally:
        session_revoked.disconnect(receive)
    assert sent == [
        ("802", [keys.storage_id(lone)], "admin"),
        ("801", sorted(keys.storage_id(key) for key in (first, second)), "admin"),
    ]

    entries = LogEntry.objects.filter(action_flag=DELETION).order_by("object_id")
    (who,) = {entry.user for entry in entries}  # the superuser client's user, for each
    assert who.is_superuser
    assert {entry.content_type.model for entry in entries} == {"session"}
    by_id = {entry.object_id: entry for entry in entries}
    assert by_id.keys() == {keys.storage_id(key) for key in (first, second, lone)}
    assert by_id[keys.storage_id(lone)].object_repr.endswith("of user 802")
    assert by_id[keys.storage_id(lone)].change_message == "Revoked."
    assert "every session of its user" in by_id[keys.storage_id(first)].change_message
    for entry in entries:  # the stored id's first characters, never the session key
        assert not any(key in str(entry.__dict__) for key in (first, second, lone))
    history = superuser.get("/admin/").content.decode()
    assert "of user 802" in history  # the admin's "Recent actions"


def test_pages_follow_the_admin_permissions(engine: type[Any]) -> None:
    key = keys.storage_id(signed_in(engine, "701"))
    assert Client().get(LIST).status_code == 302  # to the admin's login page
    assert staff().get(LIST).status_code == 403
    viewer = staff("view_session")
    assert viewer.get(LIST).status_code == 200
    assert "Revoke" not in viewer.get(f"{LIST}{key}/").content.decode()
    assert viewer.post(f"{LIST}{key}/revoke/").status_code == 403
    assert viewer.post(f"{LIST}revoke-user/", {"user": "701"}).status_code == 403
    revoker = staff("view_session", "delete_session")
    assert "Revoke this session" in revoker.get(f"{LIST}{key}/").content.decode()
    assert revoker.post(f"{LIST}{key}/revoke/").status_code == 302


def test_unknown_or_malformed_input_is_not_found(engine: type[Any], superuser: Client) -> None:
    assert superuser.get(f"{LIST}{'0' * 64}/").status_code == 404
    assert superuser.get(f"{LIST}not-an-id/").status_code == 404
    assert superuser.post(f"{LIST}{'0' * 64}/revoke/").status_code == 404
    assert superuser.get(LIST, {"cursor": "0x" + "z" * 62}).status_code == 404
    assert superuser.get(LIST, {"user": "a\x00b"}).status_code == 200
    assert superuser.post(f"{LIST}revoke-user/", {"user": ""}).status_code == 404


def test_any_user_id_can_be_shown_and_revoked(engine: type[Any], superuser: Client) -> None:
    key = signed_in(engine, "tenant/7 <b>")
    detail = superuser.get(f"{LIST}{keys.storage_id(key)}/").content.decode()
    assert "tenant/7 &lt;b&gt;" in detail
    assert "<b>" not in detail
    listing = superuser.get(LIST, {"user": "tenant/7 <b>"}).content.decode()
    assert keys.storage_id(key)[:18] in listing
    response = superuser.post(f"{LIST}revoke-user/", {"user": "tenant/7 <b>"})
    assert response.status_code == 302
    assert engine(key).load() == {}


def test_without_hashed_keys_the_pages_show_nothing(engine: type[Any]) -> None:
    with override_settings(AZURE_SESSIONS={**settings.AZURE_SESSIONS, "HASH_KEYS": False}):
        superuser = Client()  # signed in under this setting
        superuser.force_login(User.objects.create_superuser("admin-plain"))
        key = signed_in(engine, "950")  # stored under its own key
        page = superuser.get(LIST).content.decode()
        assert "HASH_KEYS" in page
        assert key not in page
        assert superuser.get(f"{LIST}{key}/").status_code == 404
        assert superuser.post(f"{LIST}{key}/revoke/").status_code == 404


def test_pages_of_sessions(
    engine: type[Any], superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_azure_sessions import admin as sessions_admin  # needs the admin installed

    made = {keys.storage_id(signed_in(engine, "801")) for _ in range(3)}
    monkeypatch.setattr(sessions_admin, "PAGE_SIZE", 2)
    listed: list[str] = []
    params: dict[str, str] = {}
    for _ in range(10_000):
        response = superuser.get(LIST, params)
        assert response.status_code == 200
        records = response.context["records"]
        assert len(records) <= 2
        listed += [record.key for record in records]
        cursor = response.context["next_cursor"]
        if cursor is None:
            assert "Next page" not in response.content.decode()
            break
        assert f"?cursor={quote(cursor)}" in response.content.decode()
        params = {"cursor": cursor}  # the engine's own: passed back unchanged
    assert made <= set(listed)  # in the engine's order; the admin's own session is listed too


@pytest.mark.parametrize("cursor", ["garbage", "r1x", "k" + "0" * 10, "../etc"])
def test_a_cursor_the_engine_did_not_make_is_a_404(
    engine: type[Any], superuser: Client, cursor: str
) -> None:
    assert superuser.get(LIST, {"cursor": cursor}).status_code == 404


def test_an_engine_of_django_is_said_to_be_unsupported(superuser: Client) -> None:
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db", **DEMO_SITE):
        client = Client()
        client.force_login(User.objects.create_superuser("admin-db"))
        page = client.get(LIST).content.decode()
        assert client.get(f"{LIST}{'0' * 64}/").status_code == 404
        assert client.post(f"{LIST}{'0' * 64}/revoke/").status_code == 404
        assert client.post(f"{LIST}revoke-user/", {"user": "1"}).status_code == 404
    assert "is not an engine of django-azure-sessions" in page


def test_the_revoke_forms_carry_a_working_csrf_token(engine: type[Any]) -> None:
    key = signed_in(engine, "901")
    admin = User.objects.create_superuser(f"admin-{uuid.uuid4().hex[:6]}")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    url = f"{LIST}{keys.storage_id(key)}/revoke/"
    assert client.post(url).status_code == 403  # no token: refused by Django's CSRF check
    page = client.get(f"{LIST}{keys.storage_id(key)}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    assert f'action="{url}"' in page
    assert client.post(url, {"csrfmiddlewaretoken": token[1]}).status_code == 302
    assert engine(key).load() == {}
