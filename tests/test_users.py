"""The user's own sessions page ("Where you are signed in"), sign_out() and
sign_out_everywhere(), on each engine's real store."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.utils import timezone

from django_azure_sessions.core import activity
from django_azure_sessions.signals import session_revoked
from django_azure_sessions.users import (
    asign_out,
    asign_out_everywhere,
    auser_sessions,
    sign_out,
    sign_out_everywhere,
    stored_id,
    user_sessions,
)
from django_azure_sessions.views import ago

from .fixtures.stores import every_store
from .fixtures.table import Azurite

pytestmark = pytest.mark.django_db(databases="__all__")

PAGE = "/account/sessions/"


@pytest.fixture(params=["sql", "redis", "table"])
def engine(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[str]:
    module = f"django_azure_sessions.backends.{request.param}"
    with every_store(azurite, SESSION_ENGINE=module):
        yield module


FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def device(engine: str, name: str) -> str:
    """What the page shows as the device of a session signed in from ``name`` (every engine
    keeps it)."""
    return name


def signed_in(user: User, user_agent: str = "") -> Client:
    """A client signed in as ``user``, its device recorded (a request that saves the session
    goes through the package's middleware)."""
    client = Client(HTTP_USER_AGENT=user_agent) if user_agent else Client()
    client.force_login(user)
    if user_agent:
        client.get("/set/", {"seen": "1"})
    return client


def is_signed_in(client: Client) -> bool:
    return client.get(PAGE).status_code == 200  # the page needs a signed-in user


def test_users_see_their_sessions_and_sign_out_the_others(engine: str) -> None:
    ann = User.objects.create_user("ann")
    laptop, phone = signed_in(ann, FIREFOX), signed_in(ann, IPHONE)
    tablet = signed_in(User.objects.get(pk=ann.pk))
    bob = signed_in(User.objects.create_user("bob"))

    page = laptop.get(PAGE)
    assert page.status_code == 200
    rows = page.context["sessions"]
    assert len(rows) == 3
    assert rows[0].current  # this device first
    firefox, iphone = device(engine, "Firefox on Windows"), device(engine, "Mobile Safari on iOS")
    assert [row.device for row in rows if row.current] == [firefox]
    assert sorted(row.device for row in rows) == sorted([firefox, iphone, "Unknown device"])
    html = page.content.decode()
    assert html.count("This device") == 1
    assert iphone in html
    assert "just now" in html
    assert 'name="viewport"' in html
    for client in (laptop, phone, tablet):
        assert client.cookies["sessionid"].value not in html

    response = laptop.post(f"{PAGE}sign-out-others/", follow=True)
    assert response.redirect_chain == [(PAGE, 302)]  # no message in the query string
    assert "Signed out of 2 other sessions." in response.content.decode()
    assert "Signed out of" not in laptop.get(PAGE).content.decode()  # shown once
    assert is_signed_in(laptop)
    assert not is_signed_in(phone)
    assert not is_signed_in(tablet)
    assert is_signed_in(bob)
    assert [s.key for s in user_sessions(ann)] == [response.context["current"]]
    again = laptop.post(f"{PAGE}sign-out-others/", follow=True).content.decode()
    assert "You were signed in nowhere else." in again


def test_users_sign_out_of_one_of_their_own_sessions_only(engine: str) -> None:
    eve = User.objects.create_user("eve")
    laptop, phone, tablet = signed_in(eve, FIREFOX), signed_in(eve, IPHONE), signed_in(eve)
    mallory = signed_in(User.objects.create_user("mallory"), FIREFOX)
    phone_id = import_module(engine).SessionStore(phone.cookies["sessionid"].value)
    [phone_row] = [r for r in laptop.get(PAGE).context["sessions"] if r.id == stored_id(phone_id)]
    [mallorys] = mallory.get(PAGE).context["sessions"]

    response = laptop.post(f"{PAGE}sign-out/", {"session": phone_row.id}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    signed_out = f"Signed out of {device(engine, 'Mobile Safari on iOS')}."
    assert signed_out in response.content.decode()
    assert not is_signed_in(phone)
    assert is_signed_in(tablet)

    # Another user's session, one already signed out, or anything else: not found.
    for chosen in (mallorys.id, phone_row.id, "", "x" * 64):
        assert laptop.post(f"{PAGE}sign-out/", {"session": chosen}).status_code == 404
    assert is_signed_in(mallory)
    assert laptop.get(f"{PAGE}sign-out/").status_code == 405

    # This device's own button signs this device out.
    [this] = [r for r in laptop.get(PAGE).context["sessions"] if r.current]
    assert laptop.post(f"{PAGE}sign-out/", {"session": this.id}).status_code == 302
    assert not is_signed_in(laptop)
    assert is_signed_in(tablet)


def test_the_page_needs_a_signed_in_user_and_a_post_to_sign_out(engine: str) -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")  # LOGIN_URL
    with override_settings(LOGIN_URL="/sign-in/"):
        assert Client().get(PAGE)["Location"] == f"/sign-in/?next={PAGE}"
    client = signed_in(User.objects.create_user("cy"))
    assert client.get(f"{PAGE}sign-out-others/").status_code == 405


def test_no_message_comes_from_the_query_string(engine: str) -> None:
    client = signed_in(User.objects.create_user("flo"))
    page = client.get(PAGE, {"signed_out": "Your account was hacked"}).content.decode()
    assert "hacked" not in page
    assert "Signed out" not in page


def test_the_default_layout_has_a_way_back_and_a_sign_out(engine: str) -> None:
    page = signed_in(User.objects.create_user("gus")).get(PAGE).content.decode()
    assert 'href="/"' in page
    assert "Signed in as <strong>gus</strong>" in page
    assert 'action="/logout/"' in page  # the URL named "logout", when there is one


LAYOUT = """<html><title>{% block title %}{% endblock %} | Shop</title>
<nav>Shop navigation</nav>{% if messages %}<p id="site-messages">{% for m in messages %}{{ m }}
{% endfor %}</p>{% endif %}<main>{% block content %}{% endblock %}</main></html>"""


def test_the_page_extends_the_layout_the_setting_names(
    engine: str, settings: Any, azurite: Azurite
) -> None:
    settings.TEMPLATES = [
        {
            **settings.TEMPLATES[0],
            "APP_DIRS": False,
            "OPTIONS": {
                **settings.TEMPLATES[0]["OPTIONS"],
                "loaders": [
                    ("django.template.loaders.locmem.Loader", {"shop/layout.html": LAYOUT}),
                    "django.template.loaders.app_directories.Loader",
                ],
            },
        }
    ]
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "BASE_TEMPLATE": "shop/layout.html"}
    hal = User.objects.create_user("hal")
    client, _other = signed_in(hal), signed_in(hal)
    page = client.get(PAGE).content.decode()
    assert "<title>Where you are signed in | Shop</title>" in page
    assert "Shop navigation" in page
    assert "Back to the site" not in page  # the package's layout is not used
    # The layout shows the messages: the page does not show them a second time.
    page = client.post(f"{PAGE}sign-out-others/", follow=True).content.decode()
    assert page.count("Signed out of 1 other session.") == 1
    assert '<p id="site-messages">Signed out of 1 other session.' in page


def test_the_page_shows_no_key_with_hash_keys_off(engine: str, settings: Any) -> None:
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "HASH_KEYS": False}
    ida = User.objects.create_user("ida")
    laptop, phone = signed_in(ida, FIREFOX), signed_in(ida, IPHONE)
    page = laptop.get(PAGE)
    html = page.content.decode()
    for client in (laptop, phone):
        assert client.cookies["sessionid"].value not in html
    [phone_row] = [row for row in page.context["sessions"] if not row.current]
    assert laptop.post(f"{PAGE}sign-out/", {"session": phone_row.id}).status_code == 302
    assert not is_signed_in(phone)
    assert is_signed_in(laptop)


def test_the_page_shows_the_address_and_place_when_they_are_known(
    engine: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, "TRACK": {"user_agent", "ip"}}
    monkeypatch.setattr(activity, "locate", lambda address: address and f"Lyon ({address})")
    kit = User.objects.create_user("kit")
    laptop = signed_in(kit, FIREFOX)  # from REMOTE_ADDR 127.0.0.1: the network 127.0.0.0/24
    [row] = laptop.get(PAGE).context["sessions"]
    html = " ".join(laptop.get(PAGE).content.decode().split())
    assert (row.address, row.location) == ("127.0.0.0/24", "Lyon (127.0.0.0/24)")
    assert "<dt>Near</dt><dd>Lyon (127.0.0.0/24)</dd>" in html
    assert "<dt>Address</dt><dd>127.0.0.0/24</dd>" in html
    with override_settings(AZURE_SESSIONS={**settings.AZURE_SESSIONS, "TRACK": set()}):
        untracked = signed_in(kit, FIREFOX)
        [this] = [row for row in untracked.get(PAGE).context["sessions"] if row.current]
    assert (this.device, this.address, this.location) == ("Unknown device", None, None)


def test_times_are_humanised() -> None:
    now = timezone.now()
    assert ago(None, now) is None
    assert ago(now - datetime.timedelta(seconds=59), now) == "just now"
    assert ago(now - datetime.timedelta(minutes=5, seconds=10), now) == "5\xa0minutes ago"
    assert ago(now - datetime.timedelta(days=3, hours=5), now) == "3\xa0days ago"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_sign_out_of_one_session(engine: str, is_async: bool) -> None:
    end = async_to_sync(asign_out) if is_async else sign_out
    jo, kim = User.objects.create_user("jo"), User.objects.create_user("kim")
    first, second = signed_in(jo, FIREFOX), signed_in(jo)
    kims = signed_in(kim)
    store = import_module(engine).SessionStore
    first_id = stored_id(store(first.cookies["sessionid"].value))
    kims_id = stored_id(store(kims.cookies["sessionid"].value))
    sent: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    session_revoked.connect(receive)
    try:
        assert end(jo, kims_id) is None  # not one of jo's
        record = end(jo, first_id)
        assert end(jo, first_id) is None  # gone already
    finally:
        session_revoked.disconnect(receive)
    assert record is not None
    assert record.key == first_id
    assert [(s["stored_ids"], s["reason"]) for s in sent] == [([first_id], "sign_out")]
    assert not is_signed_in(first)
    assert is_signed_in(second)
    assert is_signed_in(kims)


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
