"""The admin pages: browse, search, filter, inspect and revoke sessions, on each engine's
real store."""

from __future__ import annotations

import datetime
import html
import re
import uuid
from collections.abc import Iterator
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.test import Client, override_settings
from django.utils.crypto import get_random_string
from django.utils.html import strip_tags

from django_azure_sessions.core import codec, keys
from django_azure_sessions.core.activity import Device
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.storage import Record, utcnow
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
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
HOUR = 3600
SECOND = datetime.timedelta(seconds=1)


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


def stored(
    store: type[Any],
    user_id: str | None = None,
    *,
    idle: float = 0,
    device: Device | None = None,
    **data: Any,
) -> str:
    """A session stored as last active ``idle`` seconds ago (signed in 5 minutes before
    that); returns its key."""
    session = store()
    key = get_random_string(32, VALID_KEY_CHARS)
    if user_id is not None:
        data[USER_ID_KEY] = user_id
    now = utcnow()
    last = now - datetime.timedelta(seconds=idle)
    record = Record(
        key=keys.storage_id(key),
        data=codec.encode(data, session.key_salt, session.serializer),
        expires=now + datetime.timedelta(days=14),
        user_id=user_id,
        created=last - datetime.timedelta(minutes=5),
        updated=last,
        device=None if device is None else device.encode(),
    )
    storage = store.get_storage()
    assert storage.create(record) is not None
    if idle or device is not None:
        kept = storage.load(record.key)
        assert kept is not None
        if (
            kept.device != record.device
            or kept.updated is None
            or abs(kept.updated - last) > SECOND
        ):
            pytest.xfail(f"{storage.engine} does not keep a record's device and last activity")
    return key


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


def own_id(client: Client) -> str:
    """The stored id of the session ``client`` is signed in with."""
    return keys.storage_id(client.session.session_key)


def listed(response: Any) -> set[str]:
    return {record.key for record in response.context["records"]}


def text(response: Any) -> str:
    """The page's text as a reader sees it: no tags, entities resolved, spaces as one."""
    return re.sub(r"\s+", " ", html.unescape(strip_tags(response.content.decode())))


def test_browse_and_inspect(engine: type[Any], superuser: Client) -> None:
    alice = User.objects.create_user("alice", "alice@example.com")
    firefox = Device(FIREFOX, "203.0.113.0/24")
    signed = stored(engine, str(alice.pk), device=firefox, cart=["pear", "plum"])
    anonymous = stored(engine, idle=600)
    unknown = stored(engine, "501")  # an id that is no user of the user model

    index = superuser.get("/admin/").content.decode()
    assert f'href="{LIST}"' in index

    response = superuser.get(LIST)
    listing = response.content.decode()
    for key in (signed, anonymous, unknown):
        assert f"<code>{keys.storage_id(key)[:18]}…</code>" in listing
        assert key not in listing  # the stored id, never the cookie value
    assert engine.__module__ in listing
    assert f'<a href="/admin/auth/user/{alice.pk}/change/" class="das-user">alice</a>' in listing
    assert '<span class="quiet">Anonymous</span>' in listing
    assert '<span class="das-user">user 501</span>' in listing
    assert ">Firefox on Windows</span>" in listing
    assert "203.0.113.0/24" in listing
    # the admin's own session (force_login's) is listed, and marked as such
    assert own_id(superuser) in listed(response)
    mark = re.search(r'<code>(\w+)…</code></a> <span class="das-own" id="own-session">', listing)
    assert mark is not None
    assert own_id(superuser).startswith(mark[1])
    assert listing.count('id="own-session"') == 1

    detail = superuser.get(f"{LIST}{keys.storage_id(signed)}/")
    assert detail.status_code == 200
    page = text(detail)
    for shown in ("pear", "plum", "alice", "Firefox on Windows", FIREFOX, "203.0.113.0/24"):
        assert shown in page
    for hidden in ("secret-hash", "_auth_user_hash", "csrf-secret", "_csrftoken"):
        assert hidden not in page
    assert signed not in page
    assert "your own session" not in page
    revoke = detail.content.decode()
    assert 'class="deletelink" id="revoke-session">Revoke this session</a>' in revoke
    assert 'class="deletelink" id="revoke-user">Revoke every session of alice</a>' in revoke
    own = superuser.get(f"{LIST}{own_id(superuser)}/").content.decode()
    assert "This is your own session" in own


def test_search_finds_a_users_sessions_by_username_or_email(
    engine: type[Any], superuser: Client
) -> None:
    alice = User.objects.create_user("Alice", "alice@example.com")
    bob = User.objects.create_user("bob", "bob@example.com")
    User.objects.create_user("carol", "carol@example.com")  # signed in nowhere
    mine = {keys.storage_id(stored(engine, str(alice.pk))) for _ in range(2)}
    theirs = keys.storage_id(stored(engine, str(bob.pk)))
    stored(engine)  # anonymous

    for query in ("Alice", "alice", "ALICE@example.COM", str(alice.pk)):
        response = superuser.get(LIST, {"q": query})
        assert listed(response) == mine, query
        page = text(response)
        assert "Sessions of Alice: 2 live sessions." in page
        assert theirs[:18] not in page
        assert f'value="{query}" id="searchbar"' in response.content.decode()  # kept
    assert 'href="/admin/django_azure_sessions/session/revoke-user/?user=' in (
        superuser.get(LIST, {"q": "alice"}).content.decode()
    )

    nowhere = superuser.get(LIST, {"q": "carol"})
    assert listed(nowhere) == set()
    assert "carol is signed in nowhere" in text(nowhere)  # not a silent "No sessions"
    assert "No user has" not in text(nowhere)

    nobody = superuser.get(LIST, {"q": "dave"})
    assert listed(nobody) == set()
    assert "No user has the username or e-mail address “dave”." in text(nobody)
    assert superuser.get(LIST, {"q": "a\x00b"}).status_code == 200

    by_id = superuser.get(LIST, {"user": str(bob.pk)})  # the links of the User column
    assert listed(by_id) == {theirs}
    assert "Sessions of bob: 1 live session." in text(by_id)


def test_filters_by_user_and_last_activity(engine: type[Any], superuser: Client) -> None:
    own = own_id(superuser)  # signed in, active now
    anonymous = keys.storage_id(stored(engine, idle=600))
    hours = keys.storage_id(stored(engine, "11", idle=2 * HOUR))
    days = keys.storage_id(stored(engine, "12", idle=3 * 24 * HOUR))
    weeks = keys.storage_id(stored(engine, "13", idle=10 * 24 * HOUR))
    every = {own, anonymous, hours, days, weeks}

    assert listed(superuser.get(LIST)) == every
    expected = {
        "status=signed-in": {own, hours, days, weeks},
        "status=anonymous": {anonymous},
        "active=hour": {own, anonymous},
        "active=day": {own, anonymous, hours},
        "active=week": {own, anonymous, hours, days},
        "status=anonymous&active=day": {anonymous},
        "status=signed-in&active=week": {own, hours, days},
        "status=bogus": every,  # an unknown value is no filter
    }
    for query, keys_ in expected.items():
        response = superuser.get(f"{LIST}?{query}")
        assert listed(response) == keys_, query
        if engine.__module__.endswith("sql"):  # counted by the database
            assert f"{len(keys_)} of 5 live sessions match" in text(response) or (
                query == "status=bogus" and "5 live sessions" in text(response)
            )
    page = superuser.get(f"{LIST}?status=anonymous").content.decode()
    assert '<li class="selected"><a href="?status=anonymous">Anonymous</a></li>' in page
    assert '<a href="?status=anonymous&amp;active=hour">In the last hour</a>' in page
    assert "Clear all filters" in page

    searched = superuser.get(LIST, {"q": "nobody", "status": "anonymous"})
    assert listed(searched) == set()


def test_counts_where_the_store_counts_and_more_elsewhere(
    engine: type[Any], superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_azure_sessions import admin as sessions_admin

    for _ in range(5):
        stored(engine, "21")
    monkeypatch.setattr(sessions_admin, "PAGE_SIZE", 2)
    response = superuser.get(LIST)
    assert 'id="next-page">Next page &rsaquo;</a>' in response.content.decode()
    page = text(response)
    if engine.__module__.endswith("sql"):
        assert "6 live sessions; 2 on this page." in page  # the admin's own is the sixth
        assert "and more" not in page
    else:
        assert re.search(r"\d+ sessions? on this page, and more\.", page)
        assert "live sessions" not in page
    everything = superuser.get(LIST, {"q": "", "user": "21"})
    assert "5 sessions" in text(everything)
    assert "Next page" not in text(everything)


def test_the_chart_of_last_activity(engine: type[Any], superuser: Client) -> None:
    stored(engine, idle=60)
    stored(engine, idle=2 * HOUR)
    stored(engine, idle=30 * HOUR)
    stored(engine, idle=10 * 24 * HOUR)
    stored(engine, idle=11 * 24 * HOUR)
    response = superuser.get(LIST)
    chart = response.context["chart"]
    counts = {bar.label: bar.count for bar in chart.bars}
    assert counts == {  # with the admin's own session, active now
        "Last hour": 2,
        "1 hour to 1 day": 1,
        "1 day to 1 week": 1,
        "Over a week": 2,
    }
    assert max(bar.width for bar in chart.bars) == chart.BAR_WIDTH
    page = response.content.decode()
    assert '<figure class="das-chart" id="activity-chart">' in page
    assert "<svg" in page
    assert "<script" not in page.split('id="activity-chart"')[1][:3000]
    assert "Last hour, 2; 1 hour to 1 day, 1; 1 day to 1 week, 1; Over a week, 2" in page
    if engine.__module__.endswith("sql"):
        assert "All 6 live sessions, counted by the database." in page
    else:
        assert "Only the 6 sessions read for this page" in page
    user_chart = superuser.get(LIST, {"user": "nobody"}).context["chart"]
    assert [bar.count for bar in user_chart.bars] == [0, 0, 0, 0]


def test_times_are_humanised_and_values_are_json(engine: type[Any], superuser: Client) -> None:
    key = stored(engine, "31", idle=2 * HOUR, cart=["pear", "plum"], prefs={"dark": True})
    listing = text(superuser.get(LIST))
    detail = text(superuser.get(f"{LIST}{keys.storage_id(key)}/"))
    for page in (listing, detail):
        assert "2 hours ago" in page  # last activity
        assert not re.search(r"days?, \d+:\d\d:\d\d", page)  # no raw timedelta
    assert "in 1 week, 6 days" in detail  # expiry
    assert "just now" in listing  # the admin's own session
    assert '[ "pear", "plum" ]' in detail
    assert '{ "dark": true }' in detail
    assert "['pear', 'plum']" not in detail
    assert "{'dark': True}" not in detail


def test_a_value_that_is_not_json_shows_as_its_repr(engine: type[Any], superuser: Client) -> None:
    with override_settings(SESSION_SERIALIZER="tests.serializers.DateTimeJSONSerializer"):
        moment = datetime.datetime(2024, 5, 6, 7, 8, 9)
        key = stored(engine, "32", seen=moment)
        detail = text(superuser.get(f"{LIST}{keys.storage_id(key)}/"))
    assert repr(moment) in detail


def test_revoke_one_session_through_its_confirmation_page(
    engine: type[Any], superuser: Client
) -> None:
    alice = User.objects.create_user("alice")
    first, second = stored(engine, str(alice.pk)), stored(engine, str(alice.pk))
    url = f"{LIST}{keys.storage_id(first)}/revoke/"

    confirm = superuser.get(url)  # a link shows the confirmation, and revokes nothing
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "delete-confirmation" in page  # the admin's red delete-confirmation style
    assert "Are you sure you want to revoke this session of alice?" in text(confirm)
    assert f'<form method="post" action="{url}" id="revoke-form">' in page
    assert 'type="submit" value="Yes, I\u2019m sure" id="confirm-revoke"' in page
    assert f'href="{LIST}{keys.storage_id(first)}/" class="button cancel-link"' in page
    assert 'id="own-session-warning"' not in page
    assert engine(first).load()[USER_ID_KEY] == str(alice.pk)

    response = superuser.post(url, {"post": "yes"}, follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert "The session was revoked" in text(response)
    assert engine(first).load() == {}
    assert engine(second).load()[USER_ID_KEY] == str(alice.pk)
    assert superuser.get(url).status_code == 404  # gone
    assert superuser.post(url).status_code == 404
    (entry,) = LogEntry.objects.filter(action_flag=DELETION)
    assert entry.object_id == keys.storage_id(first)
    assert entry.object_repr.endswith(f"of alice (user {alice.pk})")


def test_revoke_selected_sessions_through_a_confirmation_page(
    engine: type[Any], superuser: Client
) -> None:
    chosen = [keys.storage_id(stored(engine, "41")), keys.storage_id(stored(engine))]
    kept = stored(engine, "41")
    form = superuser.get(LIST).content.decode()
    assert f'action="{LIST}revoke-selected/"' in form
    assert f'name="_selected_action" value="{chosen[0]}"' in form
    assert 'class="button das-revoke" id="revoke-selected">Revoke selected sessions…' in form

    selection = {"_selected_action": [*chosen, "0" * 64, "not-an-id"]}
    confirm = superuser.post(f"{LIST}revoke-selected/", selection)
    assert confirm.status_code == 200
    assert "revoke the 2 selected sessions?" in text(confirm)
    page = confirm.content.decode()
    for key in chosen:
        assert f'<input type="hidden" name="_selected_action" value="{key}">' in page
        assert engine.get_storage().load(key) is not None  # not yet

    response = superuser.post(f"{LIST}revoke-selected/", {**selection, "post": "yes"}, follow=True)
    assert "2 sessions revoked" in text(response)
    assert all(engine.get_storage().load(key) is None for key in chosen)
    assert engine(kept).load()[USER_ID_KEY] == "41"
    logged = LogEntry.objects.filter(action_flag=DELETION)
    assert {entry.object_id for entry in logged} == set(chosen)
    assert {entry.object_repr.split(" of ")[-1] for entry in logged} == {"user 41", "no user"}

    nothing = superuser.post(f"{LIST}revoke-selected/", {"post": "yes"}, follow=True)
    assert "nothing was revoked" in text(nothing)
    assert superuser.get(f"{LIST}revoke-selected/").status_code == 405


def test_revoke_every_session_of_a_user_through_a_confirmation_page(
    engine: type[Any], superuser: Client
) -> None:
    first, second = signed_in(engine, "601"), signed_in(engine, "601")
    other = signed_in(engine, "602")
    url = f"{LIST}revoke-user/"

    confirm = superuser.get(url, {"user": "601"})
    assert confirm.status_code == 200
    assert "revoke every session of user 601?" in text(confirm)
    page = confirm.content.decode()
    assert '<input type="hidden" name="user" value="601">' in page
    assert page.count("<li><code>") == 2
    assert engine(first).load()[USER_ID_KEY] == "601"

    response = superuser.post(url, {"user": "601", "post": "yes"}, follow=True)
    assert "2 sessions of user 601 revoked" in text(response)
    assert engine(first).load() == engine(second).load() == {}
    assert engine(other).load()[USER_ID_KEY] == "602"
    none_left = superuser.get(url, {"user": "601"}, follow=True)
    assert "User 601 has no live sessions." in text(none_left)


def test_revoking_your_own_session_warns_and_signs_you_out(
    engine: type[Any], superuser: Client
) -> None:
    admin_id = superuser.session[USER_ID_KEY]
    elsewhere = signed_in(engine, admin_id)  # the same admin, on another device
    own = own_id(superuser)

    confirm = superuser.get(f"{LIST}revoke-user/", {"user": admin_id})
    assert 'id="own-session-warning"' in confirm.content.decode()
    assert "(your session)" in text(confirm)
    one = superuser.get(f"{LIST}{own}/revoke/").content.decode()
    assert 'id="own-session-warning"' in one

    response = superuser.post(f"{LIST}revoke-user/", {"user": admin_id, "post": "yes"})
    login = f"/admin/login/?next={LIST.replace('/', '%2F')}"
    assert response.status_code == 302
    assert response["Location"] == login
    assert engine(elsewhere).load() == {}
    assert engine.get_storage().load(own) is None
    page = superuser.get(login)  # the login page, with no message for whoever signs in next
    assert page.status_code == 200
    assert 'id="login-form"' in page.content.decode()
    assert "revoked" not in text(page)
    assert 'class="messagelist"' not in page.content.decode()
    assert superuser.get(LIST).status_code == 302  # signed out
    assert LogEntry.objects.filter(action_flag=DELETION, object_id=own).exists()


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
        superuser.post(f"{LIST}{keys.storage_id(lone)}/revoke/", {"post": "yes"})
        superuser.post(f"{LIST}revoke-user/", {"user": "801", "post": "yes"})
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
    assert "_selected_action" not in viewer.get(LIST).content.decode()
    assert viewer.get(f"{LIST}{key}/revoke/").status_code == 403
    assert viewer.post(f"{LIST}{key}/revoke/").status_code == 403
    assert viewer.post(f"{LIST}revoke-user/", {"user": "701"}).status_code == 403
    assert viewer.post(f"{LIST}revoke-selected/", {"_selected_action": key}).status_code == 403
    revoker = staff("view_session", "delete_session")
    assert "Revoke this session" in revoker.get(f"{LIST}{key}/").content.decode()
    assert revoker.get(f"{LIST}{key}/revoke/").status_code == 200
    assert revoker.post(f"{LIST}{key}/revoke/").status_code == 302


def test_unknown_or_malformed_input_is_not_found(engine: type[Any], superuser: Client) -> None:
    assert superuser.get(f"{LIST}{'0' * 64}/").status_code == 404
    assert superuser.get(f"{LIST}not-an-id/").status_code == 404
    assert superuser.get(f"{LIST}{'0' * 64}/revoke/").status_code == 404
    assert superuser.post(f"{LIST}{'0' * 64}/revoke/").status_code == 404
    assert superuser.get(LIST, {"cursor": "0x" + "z" * 62}).status_code == 404
    assert superuser.get(LIST, {"user": "a\x00b"}).status_code == 200
    assert superuser.post(f"{LIST}revoke-user/", {"user": ""}).status_code == 404
    assert superuser.get(f"{LIST}revoke-user/", {"user": "a\x00b"}).status_code == 404


def test_any_user_id_can_be_shown_and_revoked(engine: type[Any], superuser: Client) -> None:
    key = signed_in(engine, "tenant/7 <b>")
    detail = superuser.get(f"{LIST}{keys.storage_id(key)}/").content.decode()
    assert "tenant/7 &lt;b&gt;" in detail
    assert "<b>" not in detail
    listing = superuser.get(LIST, {"user": "tenant/7 <b>"}).content.decode()
    assert keys.storage_id(key)[:18] in listing
    assert "<b>" not in listing
    assert "<b>" not in superuser.get(LIST, {"q": "tenant/7 <b>"}).content.decode()
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
        assert superuser.get(f"{LIST}{key}/revoke/").status_code == 404
        assert superuser.post(f"{LIST}{key}/revoke/").status_code == 404
        selected = superuser.post(f"{LIST}revoke-selected/", {"_selected_action": key})
        assert selected.status_code == 404


def test_pages_of_sessions(
    engine: type[Any], superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_azure_sessions import admin as sessions_admin  # needs the admin installed

    made = {keys.storage_id(signed_in(engine, "801")) for _ in range(3)}
    monkeypatch.setattr(sessions_admin, "PAGE_SIZE", 2)
    listed_: list[str] = []
    params: dict[str, str] = {"status": "signed-in"}  # kept from page to page
    for _ in range(10_000):
        response = superuser.get(LIST, params)
        assert response.status_code == 200
        records = response.context["records"]
        listed_ += [record.key for record in records]
        cursor = response.context["next_cursor"]
        if cursor is None:
            assert "Next page" not in response.content.decode()
            break
        link = re.search(r'<a href="([^"]+)" id="next-page">', response.content.decode())
        assert link is not None
        query = parse_qs(urlsplit(html.unescape(link[1])).query)
        assert query == {"status": ["signed-in"], "cursor": [cursor]}  # passed back unchanged
        params = {"status": "signed-in", "cursor": cursor}
    assert made <= set(listed_)  # in the engine's order; the admin's own session is listed too


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
        assert client.post(f"{LIST}revoke-selected/", {"post": "yes"}).status_code == 404
    assert "is not an engine of django-azure-sessions" in page


def test_the_revoke_forms_carry_a_working_csrf_token(engine: type[Any]) -> None:
    key = signed_in(engine, "901")
    admin = User.objects.create_superuser(f"admin-{uuid.uuid4().hex[:6]}")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    url = f"{LIST}{keys.storage_id(key)}/revoke/"
    assert client.post(url, {"post": "yes"}).status_code == 403  # no token: Django's check
    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    assert f'action="{url}"' in page
    assert client.post(url, {"csrfmiddlewaretoken": token[1], "post": "yes"}).status_code == 302
    assert engine(key).load() == {}


def test_json_or_repr() -> None:
    from django_azure_sessions.admin import ago, as_json, until

    assert as_json({"a": [1, "é"]}) == '{\n  "a": [\n    1,\n    "é"\n  ]\n}'
    assert as_json({1, 2}) == "{1, 2}"
    now = utcnow()
    assert ago(now - datetime.timedelta(seconds=5), now) == "just now"
    assert ago(now - datetime.timedelta(days=3, hours=5), now) == "3\xa0days ago"
    assert ago(None, now) == "-"
    assert until(now + datetime.timedelta(days=13, hours=23, seconds=59), now) == (
        "in 1\xa0week, 6\xa0days"
    )
    assert until(now + datetime.timedelta(seconds=5), now) == "in less than a minute"
