"""Activity tracking through the middleware, on every engine: the device, sliding expiry by
touch, the idle and absolute timeouts, the cap per user, and revocation winning over a
request that loaded the session before it was revoked."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client

from django_azure_sessions.core import activity, keys
from django_azure_sessions.core import session as core_session
from django_azure_sessions.core.activity import Device
from django_azure_sessions.core.storage import Record, Storage, utcnow
from django_azure_sessions.signals import session_revoked

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
OPERATIONS = ("load", "create", "update", "touch", "delete")


class Browser:
    """A test client, sync or async, that sends a user agent and speaks in paths."""

    def __init__(self, is_async: bool, user_agent: str = FIREFOX, **headers: str) -> None:
        if is_async and django.VERSION < (5, 0):
            pytest.skip("AsyncClient.aforce_login() needs Django 5.0")
        self.is_async = is_async
        self.client: Any = AsyncClient() if is_async else Client()
        self.headers = {"User-Agent": user_agent, **headers}

    def get(self, path: str, **params: str) -> Any:
        if self.is_async:
            return async_to_sync(self.client.get)(path, params, headers=self.headers)
        return self.client.get(path, params, headers=self.headers)

    def login(self, user: User) -> None:
        if self.is_async:
            async_to_sync(self.client.aforce_login)(user)
        else:
            self.client.force_login(user)

    @property
    def key(self) -> str:
        return self.client.cookies["sessionid"].value  # type: ignore[no-any-return]


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def is_async(request: pytest.FixtureRequest) -> bool:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def storage(engine: type[Any]) -> Storage:
    return engine.get_storage()  # type: ignore[no-any-return]


@pytest.fixture
def calls(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each storage operation ran (sync and async counted alike)."""
    counted: Counter[str] = Counter()
    for name in OPERATIONS:
        for method in (name, "a" + name):
            original = getattr(storage, method)

            def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
                counted[_name] += 1
                return _original(*args)

            monkeypatch.setattr(storage, method, spy)
    return counted


@pytest.fixture
def revocations() -> Iterator[list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    session_revoked.connect(receiver, weak=False)
    yield sent
    session_revoked.disconnect(receiver)


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``later(seconds)``: the core's clock runs ``seconds`` ahead from then on."""

    def shift(seconds: float) -> None:
        ahead = datetime.timedelta(seconds=seconds)
        monkeypatch.setattr(core_session, "utcnow", lambda: utcnow() + ahead)

    return shift


def configure(settings: Any, **activity_settings: Any) -> None:
    settings.AZURE_SESSIONS = {**settings.AZURE_SESSIONS, **activity_settings}


def stored(storage: Storage, key: str) -> Record | None:
    return storage.load(keys.storage_id(key))


def make_user(name: str = "alice") -> User:
    return User.objects.create_user(f"{name}-{keys.new_key()[:6]}", password="x")


# The device


def test_the_device_is_recorded_with_the_first_save(
    storage: Storage, is_async: bool, settings: Any
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", colour="teal")
    record = stored(storage, browser.key)
    assert record is not None
    device = Device.of(record)
    assert device == Device(FIREFOX, None)  # "ip" is not tracked by default
    assert device.browser == "Firefox on Windows"
    assert record.created is not None
    assert record.updated is not None


def test_the_address_is_cut_to_its_network_behind_trusted_proxies(
    storage: Storage, is_async: bool, settings: Any
) -> None:
    configure(settings, TRACK={"user_agent", "ip"}, TRUSTED_PROXIES=1)
    forged_then_real = "10.9.9.9, 198.51.100.77"
    browser = Browser(is_async, **{"X-Forwarded-For": forged_then_real})
    browser.get("/set/", a="1")
    record = stored(storage, browser.key)
    assert record is not None
    assert Device.of(record) == Device(FIREFOX, "198.51.100.0/24")


def test_nothing_is_recorded_when_nothing_is_tracked(
    storage: Storage, is_async: bool, settings: Any
) -> None:
    configure(settings, TRACK=set())
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    record = stored(storage, browser.key)
    assert record is not None
    assert record.device is None


@pytest.mark.parametrize(
    ("meta", "proxies", "expected"),
    [
        ({"REMOTE_ADDR": "203.0.113.9"}, 0, "203.0.113.9"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, 0, "10.0.0.1"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4"}, 1, "1.2.3.4"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4"}, 2, "6.6.6.6"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, 3, "1.2.3.4"),
        ({"REMOTE_ADDR": "10.0.0.1"}, 1, "10.0.0.1"),
    ],
)
def test_client_address(meta: dict[str, str], proxies: int, expected: str) -> None:
    assert activity.client_address(meta, proxies) == expected


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("198.51.100.77", (24, 48), "198.51.100.0/24"),
        ("2001:db8:1:2:3:4:5:6", (24, 48), "2001:db8:1::/48"),
        ("::ffff:198.51.100.77", (16, 48), "198.51.0.0/16"),
        ("[2001:db8::1]", None, "2001:db8::1"),
        ("198.51.100.77", None, "198.51.100.77"),
        ("not an address", (24, 48), None),
        ("", (24, 48), None),
    ],
)
def test_network(address: str, prefix: tuple[int, int] | None, expected: str | None) -> None:
    assert activity.network(address, prefix) == expected


@pytest.mark.parametrize("address", ["198.51.100.77", "255.255.255.255", "2001:db8:1:2:3:4:5:6"])
def test_network_writes_what_ip_network_writes(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    for bits in range(parsed.max_prefixlen + 1):
        expected = str(ipaddress.ip_network((parsed, bits), strict=False))
        assert activity.network(address, (bits, bits)) == expected


@pytest.mark.parametrize("prefix", [(33, 48), (-1, 48), (24, 129)])
def test_network_refuses_a_prefix_length_out_of_range(prefix: tuple[int, int]) -> None:
    address = "2001:db8::1" if prefix[1] > 128 else "198.51.100.77"
    with pytest.raises(ValueError, match="not a prefix length"):
        activity.network(address, prefix)


def test_user_agents_read_as_people_say_them() -> None:
    assert Device(SAFARI).browser == "Mobile Safari on iOS"
    assert Device("").browser == "Unknown device"
    assert Device("curl/8.5.0").browser == "curl"
    assert Device("x" * 300).browser == "Unknown device"
    assert Device("", "198.51.100.0/24").location is None  # no GEOIP_PATH: no place


# Sliding expiry


def test_a_read_within_the_interval_writes_nothing(
    storage: Storage, calls: Counter[str], is_async: bool
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    calls.clear()
    response = browser.get("/get/")
    assert response.json() == {"a": "1"}
    assert calls == Counter(load=1)
    assert "sessionid" not in response.cookies


def test_a_read_after_the_interval_touches_and_slides_the_cookie(
    storage: Storage, calls: Counter[str], is_async: bool, later: Any
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    before = stored(storage, browser.key)
    assert before is not None
    later(301)
    calls.clear()
    response = browser.get("/get/")
    assert calls == Counter(load=1, touch=1)
    after = stored(storage, browser.key)
    assert after is not None
    assert after.expires - before.expires > datetime.timedelta(seconds=290)
    assert after.updated - before.updated > datetime.timedelta(seconds=290)  # type: ignore[operator]
    assert (after.data, after.device) == (before.data, before.device)
    assert response.cookies["sessionid"].value == browser.key
    assert int(response.cookies["sessionid"]["max-age"]) == 1_209_600
    # Written again: the next read is within the interval.
    calls.clear()
    browser.get("/get/")
    assert calls == Counter(load=1)


def test_a_new_device_is_a_full_save(
    storage: Storage, calls: Counter[str], is_async: bool, later: Any
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    browser.headers["User-Agent"] = SAFARI
    later(301)
    calls.clear()
    browser.get("/get/")
    assert calls == Counter(load=1, update=1)
    record = stored(storage, browser.key)
    assert record is not None
    assert Device.of(record) == Device(SAFARI)


def test_a_touch_after_a_newer_save_changes_nothing(
    engine: type[Any], storage: Storage, is_async: bool, later: Any
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    reader = engine(browser.key)
    assert reader["a"] == "1"  # loaded before the other request saved
    browser.get("/set/", a="2")
    later(301)
    assert reader.activity_due()
    reader.mark_active()
    reader.save()
    record = stored(storage, browser.key)
    assert record is not None
    assert engine(browser.key)["a"] == "2"


# Timeouts


@pytest.mark.parametrize(
    ("timeouts", "seconds", "reason"),
    [
        ({"IDLE_TIMEOUT": 600}, 600 + 300 + 1, "idle"),  # idle + ACTIVITY_INTERVAL
        ({"ABSOLUTE_TIMEOUT": 3600, "ACTIVITY_INTERVAL": 60}, 3601, "absolute"),
    ],
)
def test_a_timed_out_session_is_no_session_and_is_deleted(
    engine: type[Any],
    storage: Storage,
    is_async: bool,
    settings: Any,
    later: Any,
    revocations: list[dict[str, Any]],
    timeouts: dict[str, int],
    seconds: int,
    reason: str,
) -> None:
    configure(settings, **timeouts)
    user = make_user()
    browser = Browser(is_async)
    browser.login(user)
    browser.get("/set/", a="1")
    key = browser.key
    later(seconds - 2)
    assert engine(key)["a"] == "1"  # not yet (read without the middleware: no touch)
    later(seconds)
    assert browser.get("/get/").json() == {}
    assert stored(storage, key) is None
    assert revocations == [
        {"user_id": str(user.pk), "stored_ids": [keys.storage_id(key)], "reason": reason}
    ]
    # A replayed cookie finds nothing, whatever the clock says.
    replay = Browser(is_async)
    replay.client.cookies["sessionid"] = key
    assert replay.get("/get/").json() == {}


def test_activity_keeps_an_idle_timeout_away(
    storage: Storage, is_async: bool, settings: Any, later: Any
) -> None:
    configure(settings, IDLE_TIMEOUT=600, ACTIVITY_INTERVAL=60)
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    for minutes in range(5, 60, 5):  # a request every 5 minutes for an hour
        later(minutes * 60)
        assert browser.get("/get/").json() == {"a": "1"}


def test_the_absolute_timeout_holds_however_active(
    engine: type[Any], is_async: bool, settings: Any, later: Any
) -> None:
    configure(settings, ABSOLUTE_TIMEOUT=1800, ACTIVITY_INTERVAL=60)
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    for minutes in range(5, 30, 5):
        later(minutes * 60)
        assert browser.get("/get/").json() == {"a": "1"}
    later(1801)
    assert browser.get("/get/").json() == {}


# The cap per user


def test_sign_ins_beyond_the_cap_revoke_the_least_recently_active(
    storage: Storage, is_async: bool, settings: Any, revocations: list[dict[str, Any]]
) -> None:
    configure(settings, MAX_SESSIONS_PER_USER=2)
    user = make_user()
    first, second, third = Browser(is_async), Browser(is_async), Browser(is_async)
    for browser in (first, second):
        browser.login(user)
    first.get("/set/", used="recently")  # first is now the most recently active
    third.login(user)
    alive = {r.key for r in storage.user_records(str(user.pk))}
    assert alive == {keys.storage_id(first.key), keys.storage_id(third.key)}
    assert revocations == [
        {"user_id": str(user.pk), "stored_ids": [keys.storage_id(second.key)], "reason": "cap"}
    ]
    assert "_auth_user_id" not in second.get("/get/").json()


def test_concurrent_sign_ins_keep_the_newest(storage: Storage, settings: Any) -> None:
    if storage.engine == "sql" and connections[storage.alias].vendor == "sqlite":  # type: ignore[attr-defined]
        pytest.skip("SQLite's in-memory test database locks out concurrent writers")
    configure(settings, MAX_SESSIONS_PER_USER=1)
    user = make_user()
    browsers = [Browser(False) for _ in range(6)]
    start = threading.Barrier(len(browsers))
    errors: list[BaseException] = []

    def sign_in(browser: Browser) -> None:
        start.wait()
        try:
            browser.login(user)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's, so the test database can be dropped

    threads = [threading.Thread(target=sign_in, args=(b,)) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    alive = {r.key for r in storage.user_records(str(user.pk))}
    assert len(alive) >= 1  # a sign-in never revokes its own session
    newest = Browser(False)
    newest.login(user)
    alive = {r.key for r in storage.user_records(str(user.pk))}
    assert alive == {keys.storage_id(newest.key)}


# Revocation wins


def test_a_request_that_loaded_before_a_revoke_never_brings_it_back(
    engine: type[Any], storage: Storage, is_async: bool, later: Any
) -> None:
    browser = Browser(is_async)
    browser.get("/set/", a="1")
    for change in (True, False):  # a save, then a touch
        browser.get("/set/", a="1")
        slow = engine(browser.key)
        assert slow["a"] == "1"
        storage.delete(keys.storage_id(browser.key))  # revoked while the request runs
        if change:
            slow["a"] = "2"
        else:
            later(301)
            assert slow.activity_due()
            slow.mark_active()
        if change:
            with pytest.raises(django.contrib.sessions.backends.base.UpdateError):
                _save(slow, is_async)
        else:
            _save(slow, is_async)
        assert stored(storage, browser.key) is None


def _save(session: Any, is_async: bool) -> None:
    if is_async:
        async_to_sync(session.asave)()
    else:
        session.save()
