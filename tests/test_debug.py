"""Django's error reports never show the secrets AZURE_SESSIONS holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

from django_azure_sessions.debug import SafeExceptionReporterFilter

FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"
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
    with override_settings(AZURE_SESSIONS=CONFIG):
        assert "django_azure_sessions.W002" in {m.id for m in run_checks()}
    with override_settings(AZURE_SESSIONS=CONFIG, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER):
        assert "django_azure_sessions.W002" not in {m.id for m in run_checks()}
    with override_settings(AZURE_SESSIONS={"REDIS": {"URL": "redis://127.0.0.1:6379/0"}}):
        assert "django_azure_sessions.W002" not in {m.id for m in run_checks()}


def test_a_url_that_cannot_be_parsed_is_hidden_whole() -> None:
    config = {"REDIS": {"URL": f"redis://:{REDIS_KEY}@host:port/0"}}
    with override_settings(AZURE_SESSIONS=config):
        clean = SafeExceptionReporterFilter().get_safe_settings()["AZURE_SESSIONS"]
        assert REDIS_KEY not in repr(clean)
        run_checks()  # the check that calls the same code does not crash
