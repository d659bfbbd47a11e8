"""Django's error reports never show the secrets AZURE_SESSIONS holds."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, NamedTuple

import pytest
import redis
from django.conf import settings
from django.core.checks import run_checks
from django.test import RequestFactory, override_settings
from django.utils.log import AdminEmailHandler
from django.views.debug import (
    ExceptionReporter,
    get_default_exception_reporter_filter,
    technical_500_response,
)
from django.views.debug import (
    SafeExceptionReporterFilter as DjangoFilter,
)

from django_azure_sessions.backends.table_client import connection_from_settings
from django_azure_sessions.conf import app_settings
from django_azure_sessions.debug import SafeExceptionReporterFilter

from .fixtures.redis import RedisServer, free_port

FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"
DJANGO_FILTER = "django.views.debug.SafeExceptionReporterFilter"
REDIS_KEY = "redis-access-key"
ACCOUNT_KEY = "c3RvcmFnZS1rZXk="
SAS_SIGNATURE = "sas-signature"
CREDENTIAL = "token-object"
SECRETS = (REDIS_KEY, ACCOUNT_KEY, SAS_SIGNATURE, CREDENTIAL)
CONFIG: dict[str, Any] = {
    "KEY_PREFIX": "site:",
    "REDIS": {
        "URL": f"rediss://:{REDIS_KEY}@example.redis.cache.windows.net:6380/0",
        "OPTIONS": {"socket_timeout": 3},
    },
    "TABLE": {
        "CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};"
            "EndpointSuffix=core.windows.net"
        ),
        "ACCOUNT_URL": f"https://acct.table.core.windows.net/?sv=2024&sig={SAS_SIGNATURE}",
        "CREDENTIAL": CREDENTIAL,
    },
}


@pytest.fixture(autouse=True)
def _reporter_filter_follows_settings() -> Iterator[None]:
    """Django builds the DEFAULT_EXCEPTION_REPORTER_FILTER once: build it anew per setting."""
    get_default_exception_reporter_filter.cache_clear()
    yield
    get_default_exception_reporter_filter.cache_clear()


def test_filter_hides_every_secret() -> None:
    with override_settings(AZURE_SESSIONS=CONFIG):
        clean = SafeExceptionReporterFilter().get_safe_settings()["AZURE_SESSIONS"]
    assert not [secret for secret in SECRETS if secret in repr(clean)]
    assert clean["REDIS"]["URL"].startswith("rediss://:********************@example.redis")
    assert "AccountName=acct" in clean["TABLE"]["CONNECTION_STRING"]
    assert clean["TABLE"]["ACCOUNT_URL"].startswith("https://acct.table.core.windows.net/?sv")
    assert clean["REDIS"]["OPTIONS"] == {"socket_timeout": 3}


def _fail() -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("debug", [True, False], ids=["debug-page", "error-email"])
def test_error_report_shows_no_secret(debug: bool) -> None:
    request = RequestFactory().get("/")
    with override_settings(
        AZURE_SESSIONS=CONFIG, DEBUG=debug, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER
    ):
        try:
            _fail()
        except RuntimeError as exc:
            reporter = ExceptionReporter(request, type(exc), exc, exc.__traceback__)
            html = reporter.get_traceback_html()
            text = reporter.get_traceback_text()
    assert "AZURE_SESSIONS" in html
    assert "example.redis.cache.windows.net" in html
    assert not [secret for secret in SECRETS if secret in html or secret in text]


def test_a_check_warns_while_secrets_would_show() -> None:
    def ids() -> set[str]:
        return {m.id for m in run_checks() if str(m.id).startswith("django_azure_sessions")}

    with override_settings(AZURE_SESSIONS=CONFIG):
        assert ids() == {"django_azure_sessions.W002"}
    with override_settings(AZURE_SESSIONS=CONFIG, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER):
        assert ids() == set()
    with override_settings(AZURE_SESSIONS={"REDIS": {"URL": "redis://127.0.0.1:6379/0"}}):
        assert ids() == set()


def test_a_url_that_cannot_be_parsed_is_hidden_whole() -> None:
    config = {"REDIS": {"URL": f"redis://:{REDIS_KEY}@host:port/0"}}
    with override_settings(AZURE_SESSIONS=config):
        clean = SafeExceptionReporterFilter().get_safe_settings()["AZURE_SESSIONS"]
        assert REDIS_KEY not in repr(clean)
        run_checks()  # the check that calls the same code does not crash


# Real errors, raised inside redis-py and the Azure SDK, through the debug page and the
# admin error e-mail. The secrets live here, far from the lines the reports quote as source.

RIGHT_PASSWORD = "rightpass"
WRONG_PASSWORD = "wrong-redis-password-7f3a"
TABLE_KEY = "dGFibGUta2V5LW5vdC1yZWFsLTlkMmM="  # base64, as account keys are
TABLE_SIGNATURE = "sas-sig-5e8b1c"


def _redis_userinfo(server: RedisServer) -> Scenario:
    url = f"redis://:{WRONG_PASSWORD}@127.0.0.1:{server.port}/0"
    return Scenario("redis", {"REDIS": {"URL": url}}, (WRONG_PASSWORD,), _load_session)


def _redis_query(server: RedisServer) -> Scenario:
    url = f"redis://127.0.0.1:{server.port}/0?password={WRONG_PASSWORD}"
    return Scenario("redis", {"REDIS": {"URL": url}}, (WRONG_PASSWORD,), _load_session)


def _redis_direct(server: RedisServer) -> Scenario:
    url = f"redis://user:{WRONG_PASSWORD}@127.0.0.1:{server.port}/0"
    return Scenario("redis", {"REDIS": {"URL": url}}, (WRONG_PASSWORD,), _ping_redis)


def _table_connection_string_with_spaces(server: RedisServer) -> Scenario:
    connection_string = (
        f"DefaultEndpointsProtocol=http; AccountName=devstoreaccount1; AccountKey={TABLE_KEY}; "
        f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1"
    )
    table = {"CONNECTION_STRING": connection_string}
    return Scenario("table", {"TABLE": table}, (TABLE_KEY,), _load_session)


def _table_sas_url(server: RedisServer) -> Scenario:
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1?sv=2024-05-04&sig={TABLE_SIGNATURE}"
    table = {"ACCOUNT_URL": url, "OPTIONS": {"retry_total": 0}}
    return Scenario("table", {"TABLE": table}, (TABLE_SIGNATURE,), _get_entity)


def _table_account_key(server: RedisServer) -> Scenario:
    table = {
        "ACCOUNT_URL": f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        "CREDENTIAL": {"account_name": "devstoreaccount1", "account_key": TABLE_KEY},
        "OPTIONS": {"retry_total": 0},
    }
    return Scenario("table", {"TABLE": table}, (TABLE_KEY,), _get_entity)


class Scenario(NamedTuple):
    engine: str
    azure_sessions: dict[str, Any]
    secrets: tuple[str, ...]
    fail: Callable[[], None]


def _load_session() -> None:
    """Through the session engine, as a view reading ``request.session`` would."""
    import_module(settings.SESSION_ENGINE).SessionStore("a" * 32).load()


def _ping_redis() -> None:
    redis.Redis.from_url(settings.AZURE_SESSIONS["REDIS"]["URL"], socket_timeout=5).ping()


def _get_entity() -> None:
    """Straight to azure-data-tables: the engine's own errors keep the SDK's out of the chain."""
    connection_from_settings(app_settings.TABLE).sync_client().get_entity("p", "r")


SCENARIOS = {
    "redis-url-userinfo": _redis_userinfo,
    "redis-url-query": _redis_query,
    "redis-py-frames": _redis_direct,
    "table-connection-string-with-spaces": _table_connection_string_with_spaces,
    "table-sas-url": _table_sas_url,
    "table-account-key-credential": _table_account_key,
}


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=RIGHT_PASSWORD).start()
    yield server
    server.stop()


class SettingsOnlyFilter(SafeExceptionReporterFilter):
    """This package's filter for settings, Django's for local variables."""

    get_traceback_frame_variables = DjangoFilter.get_traceback_frame_variables


def _exc_info(fail: Callable[[], None]) -> Any:
    """The error ``fail`` raises, caught in a frame that holds no secret of its own."""
    try:
        fail()
    except Exception:
        return sys.exc_info()
    raise AssertionError("the scenario did not fail")


def _report(channel: str, scenario: Scenario, reporter_filter: str, outbox: list[Any]) -> str:
    """The debug page (HTML and text), or the admin e-mail (body and HTML), of the error."""
    request = RequestFactory().get("/account/")
    request.META["SESSIONS_CONFIG"] = repr(scenario.azure_sessions)  # as runserver's os.environ
    with override_settings(
        SESSION_ENGINE=f"django_azure_sessions.backends.{scenario.engine}",
        AZURE_SESSIONS=scenario.azure_sessions,
        DEBUG=channel == "debug-page",
        DEFAULT_EXCEPTION_REPORTER_FILTER=reporter_filter,
        ADMINS=[("Admin", "admin@example.com")],
    ):
        exc_info = _exc_info(scenario.fail)
        if channel == "debug-page":
            page = technical_500_response(request, *exc_info).content.decode()
            text = ExceptionReporter(request, *exc_info).get_traceback_text()
            return page + text
        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 0, "Internal Server Error: /", (), exc_info
        )
        record.request = request
        record.status_code = 500
        AdminEmailHandler(include_html=True).emit(record)
    (message,) = outbox
    return str(message.body) + "".join(str(content) for content, _ in message.alternatives)


@pytest.mark.parametrize("channel", ["debug-page", "error-email"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_real_errors_show_no_secret(
    name: str, channel: str, protected_redis: RedisServer, mailoutbox: list[Any]
) -> None:
    scenario = SCENARIOS[name](protected_redis)
    report = _report(channel, scenario, FILTER, mailoutbox)
    assert "Traceback" in report
    assert "SESSIONS_CONFIG" in report
    assert not [secret for secret in scenario.secrets if secret in report]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_django_filter_would_show_them(name: str, protected_redis: RedisServer) -> None:
    """The scenarios are worth running: Django's filter leaves each secret on the debug page."""
    scenario = SCENARIOS[name](protected_redis)
    report = _report("debug-page", scenario, DJANGO_FILTER, [])
    assert [secret for secret in scenario.secrets if secret in report]


@pytest.mark.parametrize("name", [name for name in SCENARIOS if "account-key" not in name])
def test_the_libraries_locals_hold_them(name: str, protected_redis: RedisServer) -> None:
    """With the settings hidden, the local variables of redis-py / the Azure SDK still show
    each secret, but for ``get_traceback_frame_variables`` (an account key credential is an
    object whose repr holds no key: nothing to hide there)."""
    scenario = SCENARIOS[name](protected_redis)
    report = _report("debug-page", scenario, f"{__name__}.SettingsOnlyFilter", [])
    assert [secret for secret in scenario.secrets if secret in report]


def test_redis_frames_held_the_wrong_password(protected_redis: RedisServer) -> None:
    """The error comes from inside redis-py, whose locals the page lists, hidden."""
    scenario = _redis_direct(protected_redis)
    report = _report("debug-page", scenario, FILTER, [])
    assert "AuthenticationError" in report
    assert "redis/connection.py" in report
    assert "auth_args" in report
