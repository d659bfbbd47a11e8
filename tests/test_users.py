"""A user's own sessions page, and sign_out_everywhere(), on each engine's real store."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from django_azure_sessions.signals import session_revoked
from django_azure_sessions.users import (
    asign_out_everywhere,
    auser_sessions,
    sign_out_everywhere,
    stored_id,
    user_sessions,
)

from .fixtures.stores import every_store
from .fixtures.table import Azurite

pytestmark = pytest.mark.django_db(databases="__all__")

PAGE = "/account/sessions/"


@pytest.fixture(params=["sql", "redis", "table"])
def engine(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[str]:
    module = f"django_azure_sessions.backends.{request.param}"
    with every_store(azurite, SESSION_ENGINE=module):
        yield module


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def is_signed_in(client: Client) -> bool:
    return client.get(PAGE).status_code == 200  # the page needs a signed-in user


def test_users_see_their_sessions_and_sign_out_the_others(engine: str) -> None:
    ann = User.objects.create_user("ann")
    laptop, phone, tablet = signed_in(ann), signed_in(ann), signed_in(User.objects.get(pk=ann.pk))
    bob = signed_in(User.objects.create_user("bob"))

    page = laptop.get(PAGE)
    assert page.status_code == 200
    assert len(page.context["sessions"]) == 3
    assert page.content.decode().count("This session") == 1
    assert laptop.cookies["sessionid"].value not in page.content.decode()

    response = laptop.post(f"{PAGE}sign-out-others/", follow=True)
    assert "Signed out of 2 other sessions." in response.content.decode()
    assert is_signed_in(laptop)
    assert not is_signed_in(phone)
    assert not is_signed_in(tablet)
    assert is_signed_in(bob)
    assert [s.key for s in user_sessions(ann)] == [response.context["current"]]


def test_the_page_needs_a_signed_in_user_and_a_post_to_sign_out(engine: str) -> None:
    assert Client().get(PAGE).status_code == 302  # to LOGIN_URL
    client = signed_in(User.objects.create_user("cy"))
    assert client.get(f"{PAGE}sign-out-others/").status_code == 405


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_sign_out_everywhere_for_a_password_change(engine: str, is_async: bool) -> None:
    listed = async_to_sync(auser_sessions) if is_async else user_sessions
    revoke = async_to_sync(asign_out_everywhere) if is_async else sign_out_everywhere
    dee = User.objects.create_user("dee")
    first, second, kept = signed_in(dee), signed_in(dee), signed_in(dee)
    keep = import_module(engine).SessionStore(kept.cookies["sessionid"].value)
    ids = sorted(s.key for s in listed(dee))
    assert len(ids) == 3
    sent: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        sent.append({"sender": sender, **kwargs})

    session_revoked.connect(receive)
    try:
        assert revoke(dee, keep=keep) == 2
    finally:
        session_revoked.disconnect(receive)
    [signal] = sent
    assert signal["sender"] is import_module(engine).SessionStore.storage_class
    assert signal["user_id"] == str(dee.pk)
    assert signal["reason"] == "sign_out_everywhere"
    assert sorted(signal["stored_ids"]) == sorted(set(ids) - {stored_id(keep)})
    assert not is_signed_in(first)
    assert not is_signed_in(second)
    assert is_signed_in(kept)
    assert revoke(dee) == 1
    assert listed(dee) == []


def test_only_engines_of_this_package_keep_a_user_index() -> None:
    with (
        override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db"),
        pytest.raises(ImproperlyConfigured, match="engines of django_azure_sessions only"),
    ):
        user_sessions(User(pk=1))
