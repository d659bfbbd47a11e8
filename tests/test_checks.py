"""System checks and live settings."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import django_azure_sessions
from django_azure_sessions.conf import app_settings

SQL_ENGINE = "django_azure_sessions.backends.sql"


def ids(**overrides: Any) -> set[str]:
    """The ids of this package's checks that fail, with Django's own left out."""
    with override_settings(**overrides):
        return {m.id for m in run_checks() if m.id and m.id.startswith("django_azure_sessions.")}


def test_checks_are_registered_and_bound_to_manage_py_check() -> None:
    with (
        override_settings(AZURE_SESSIONS={"HASH_KEYS": "yes"}),
        pytest.raises(SystemCheckError, match=r"django_azure_sessions\.E004"),
    ):
        call_command("check")


def test_good_settings_pass() -> None:
    assert ids(AZURE_SESSIONS={"KEY_PREFIX": "shop:", "SQL": {"DATABASE": "postgres"}}) == set()


def test_good_activity_settings_pass() -> None:
    good = {
        "TRACK": {"user_agent", "ip", "last_activity"},
        "IP_PREFIX": None,
        "TRUSTED_PROXIES": 2,
        "ACTIVITY_INTERVAL": 60,
        "IDLE_TIMEOUT": 1800,
        "ABSOLUTE_TIMEOUT": 43200.5,
        "MAX_SESSIONS_PER_USER": 5,
    }
    assert ids(SESSION_ENGINE=SQL_ENGINE, AZURE_SESSIONS=good) == set()
    assert ids(SESSION_ENGINE=SQL_ENGINE, AZURE_SESSIONS={"TRACK": []}) == set()


def test_an_idle_timeout_needs_the_packages_middleware() -> None:
    found = ids(
        SESSION_ENGINE=SQL_ENGINE,
        AZURE_SESSIONS={"IDLE_TIMEOUT": 1800},
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    )
    assert found == {"django_azure_sessions.E070"}


@pytest.mark.parametrize(
    ("azure_sessions", "expected"),
    [
        (["not", "a", "dict"], "E001"),
        ({"KEYPREFIX": "typo"}, "E002"),
        ({"KEY_PREFIX": 5}, "E003"),
        ({"KEY_PREFIX": "x" * 129}, "E003"),
        ({"HASH_KEYS": 1}, "E004"),
        ({"CONFLICT_RETRIES": 0}, "E005"),
        ({"CONFLICT_RETRIES": True}, "E005"),
        ({"TIMEOUT": 0}, "E007"),
        ({"TIMEOUT": "5"}, "E007"),
        ({"TIMEOUT": 301}, "E007"),
        ({"TIMEOUT": True}, "E007"),
        ({"ON_UNAVAILABLE": "ignore"}, "E008"),
        ({"SQL": "default"}, "E013"),
        ({"SQL": {"DATABSE": "default"}}, "E010"),
        ({"REDIS": ["redis://a"]}, "E038"),
        ({"REDIS": {"URL": "redis://a", "PASWORD": "x"}}, "E020"),
        ({"TABLE": "UseDevelopmentStorage=true"}, "E051"),
        ({"TABLE": {"CONECTION_STRING": "UseDevelopmentStorage=true"}}, "E040"),
        ({"SQL": {"DATABASE": "nowhere"}}, "E011"),
        ({"SQL": {"CLEAR_BATCH_SIZE": -1}}, "E012"),
        ({"SQL": {"CLEAR_BATCH_SIZE": "1000"}}, "E012"),
        ({"TRACK": "ip"}, "E060"),
        ({"TRACK": None}, "E060"),
        ({"TRACK": {"ip", "location"}}, "E061"),
        ({"TRACK": ("ip", ["user_agent"])}, "E061"),
        ({"IP_PREFIX": 24}, "E062"),
        ({"IP_PREFIX": (33, 48)}, "E062"),
        ({"IP_PREFIX": (24, 129)}, "E062"),
        ({"IP_PREFIX": (24, True)}, "E062"),
        ({"TRUSTED_PROXIES": -1}, "E063"),
        ({"TRUSTED_PROXIES": "1"}, "E063"),
        ({"ACTIVITY_INTERVAL": -1}, "E064"),
        ({"ACTIVITY_INTERVAL": None}, "E064"),
        ({"IDLE_TIMEOUT": 0}, "E065"),
        ({"IDLE_TIMEOUT": "1800"}, "E065"),
        ({"ABSOLUTE_TIMEOUT": -5}, "E066"),
        ({"MAX_SESSIONS_PER_USER": 0}, "E067"),
        ({"MAX_SESSIONS_PER_USER": 2.5}, "E067"),
        ({"IDLE_TIMEOUT": 600, "ACTIVITY_INTERVAL": 601}, "E068"),
        ({"IDLE_TIMEOUT": 600, "TRACK": {"user_agent"}}, "E069"),
        ({"BASE_TEMPLATE": ""}, "E071"),
        ({"BASE_TEMPLATE": None}, "E071"),
        ({"BASE_TEMPLATE": ["base.html"]}, "E071"),
        ({"WARM_UP": "yes"}, "E072"),
        ({"WARM_UP": None}, "E072"),
    ],
)
def test_each_mistake_has_its_error(azure_sessions: Any, expected: str) -> None:
    found = ids(SESSION_ENGINE=SQL_ENGINE, AZURE_SESSIONS=azure_sessions)
    assert found == {f"django_azure_sessions.{expected}"}


def test_engine_checks_apply_only_to_the_engine_in_use() -> None:
    found = ids(
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        AZURE_SESSIONS={"SQL": {"DATABASE": "nowhere"}},
    )
    assert found == set()


def test_engine_without_the_app_installed(settings: Any) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "django_azure_sessions"]
    with override_settings(SESSION_ENGINE=SQL_ENGINE, INSTALLED_APPS=apps):
        from django.conf import settings as live
        from django.core.checks.registry import registry

        messages = registry.run_checks()
        found = {m.id for m in messages if str(m.id).startswith("django_azure_sessions.")}
        assert found == {"django_azure_sessions.E006"}
        assert live.SESSION_ENGINE == SQL_ENGINE


def test_app_listed_after_contrib_sessions_warns(settings: Any) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "django_azure_sessions"]
    found = ids(SESSION_ENGINE=SQL_ENGINE, INSTALLED_APPS=[*apps, "django_azure_sessions"])
    assert found == {"django_azure_sessions.W001"}


def test_settings_follow_override_settings() -> None:
    assert app_settings.KEY_PREFIX == ""
    assert app_settings.HASH_KEYS is True
    assert app_settings.CONFLICT_RETRIES == 20
    assert app_settings.SQL.DATABASE == "default"
    assert app_settings.SQL.CLEAR_BATCH_SIZE == 2500
    with override_settings(
        AZURE_SESSIONS={"KEY_PREFIX": "a:", "HASH_KEYS": False, "SQL": {"CLEAR_BATCH_SIZE": 7}}
    ):
        assert app_settings.KEY_PREFIX == "a:"
        assert app_settings.HASH_KEYS is False
        assert app_settings.SQL.CLEAR_BATCH_SIZE == 7
        assert app_settings.SQL.DATABASE == "default"
    assert app_settings.KEY_PREFIX == ""


def test_app_listed_by_its_config_class(settings: Any) -> None:
    apps = [
        "django_azure_sessions.apps.AzureSessionsConfig" if a == "django_azure_sessions" else a
        for a in settings.INSTALLED_APPS
    ]
    found = ids(SESSION_ENGINE=SQL_ENGINE, INSTALLED_APPS=apps)
    assert found == set()


# W002: every secret AZURE_SESSIONS can hold, while Django's own reporter filter is in use.

FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"

REDIS_URL = "redis://127.0.0.1:6379/0"
TABLE_ENGINE = "django_azure_sessions.backends.table"


class _TokenCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("azure_sessions", "place"),
    [
        ({"REDIS": {"URL": "rediss://:key@host:6380/0"}}, "REDIS['URL']"),
        ({"REDIS": {"URL": f"{REDIS_URL}?password=key"}}, "REDIS['URL']"),
        ({"REDIS": {"URL": REDIS_URL, "OPTIONS": {"password": "key"}}}, "REDIS['OPTIONS']"),
        (
            {"REDIS": {"URL": REDIS_URL, "OPTIONS": {"credential_provider": object()}}},
            "REDIS['OPTIONS']",
        ),
        (
            {"REDIS": {"URL": REDIS_URL, "SENTINEL_OPTIONS": {"password": "key"}}},
            "REDIS['SENTINEL_OPTIONS']",
        ),
        (
            {"REDIS": {"URL": REDIS_URL, "CREDENTIAL_PROVIDER": "a.b.provider"}},
            "REDIS['CREDENTIAL_PROVIDER']",
        ),
        (
            {"TABLE": {"CONNECTION_STRING": "AccountName=a; AccountKey=a2V5"}},
            "TABLE['CONNECTION_STRING']",
        ),
        (
            {"TABLE": {"ACCOUNT_URL": "https://a.table.core.windows.net/?sv=1&sig=s"}},
            "TABLE['ACCOUNT_URL']",
        ),
        (
            {"TABLE": {"ACCOUNT_URL": "https://a", "CREDENTIAL": _TokenCredential()}},
            "TABLE['CREDENTIAL']",
        ),
        (
            {
                "TABLE": {
                    "ACCOUNT_URL": "https://a",
                    "CREDENTIAL": {"account_name": "a", "account_key": "k"},
                }
            },
            "TABLE['CREDENTIAL']",
        ),
    ],
)
def test_each_secret_asks_for_the_reporter_filter(
    azure_sessions: dict[str, Any], place: str
) -> None:
    with override_settings(AZURE_SESSIONS=azure_sessions):
        (warning,) = [m for m in run_checks() if m.id == "django_azure_sessions.W002"]
    assert place in warning.msg
    assert ids(AZURE_SESSIONS=azure_sessions) == {"django_azure_sessions.W002"}
    assert ids(AZURE_SESSIONS=azure_sessions, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER) == set()


@pytest.mark.parametrize(
    "azure_sessions",
    [
        {"REDIS": {"URL": REDIS_URL, "OPTIONS": {"socket_timeout": 3, "ssl_keyfile": "/k"}}},
        {"REDIS": {"URL": "redis://user@127.0.0.1:6379/0?db=1"}},
        {"KEY_PREFIX": "shop:", "HASH_KEYS": True},
        {"TABLE": {"CONNECTION_STRING": "UseDevelopmentStorage=true"}},
        {"TABLE": {"ACCOUNT_URL": "https://a.table.core.windows.net"}},
    ],
)
def test_no_secret_no_warning(azure_sessions: dict[str, Any]) -> None:
    assert ids(AZURE_SESSIONS=azure_sessions) == set()


# E043: a connection string the SDK refuses is refused by `manage.py check`, and only then.

ACCOUNT_KEY = "c3RvcmFnZS1rZXktbm90LXJlYWw="
CONNECTION_STRINGS = [
    f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={ACCOUNT_KEY}",
    f"DefaultEndpointsProtocol=https; AccountName=a; AccountKey={ACCOUNT_KEY}",
    f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={ACCOUNT_KEY}; ",
    f"DefaultEndpointsProtocol=https ;AccountName=a ;AccountKey={ACCOUNT_KEY}",
    f"AccountName = a;AccountKey = {ACCOUNT_KEY}",
    f"AccountName= a;AccountKey={ACCOUNT_KEY}",
    f"AccountName=a;AccountKey= {ACCOUNT_KEY}",
    f"ACCOUNTNAME=a;accountkey={ACCOUNT_KEY};",
    f"AccountName=a;AccountKey={ACCOUNT_KEY};AccountKey={ACCOUNT_KEY}",
    f"AccountName=a;AccountKey={ACCOUNT_KEY};accountkey={ACCOUNT_KEY}",
    f"AccountName=a;;AccountKey={ACCOUNT_KEY}",
    f"AccountName=a;AccountKey={ACCOUNT_KEY};EndpointSuffix=",
    "AccountName=a;AccountKey=",
    "AccountName=a;AccountKey=not base64!",
    "AccountName=a",
    f"AccountKey={ACCOUNT_KEY}",
    "TableEndpoint=https://a.table.core.windows.net;SharedAccessSignature=sv=1&sig=x",
    "TableEndpoint=https://a.table.core.windows.net/ ;SharedAccessSignature=sv=1&sig=x",
    "TableEndpoint=https://a b;SharedAccessSignature=sv=1&sig=x",
    "SharedAccessSignature=sv=1&sig=x",
    f"TableSecondaryEndpoint=https://a-secondary.table.core.windows.net;AccountName=a;AccountKey={ACCOUNT_KEY}",
    "UseDevelopmentStorage=true",
    "UseDevelopmentStorage=true;",
    "UseDevelopmentStorage=false",
    "junk",
]


def _sdk_refuses(connection_string: str) -> bool:
    """Whether azure-data-tables refuses it: building the client, or on the first request
    before anything is sent (the request stops at a transport that has no network)."""
    from azure.core.exceptions import ServiceRequestError
    from azure.core.pipeline.transport import HttpTransport
    from azure.data.tables import TableClient
    from urllib3.util import parse_url

    class NoNetwork(HttpTransport):  # type: ignore[misc]
        def __enter__(self) -> NoNetwork:
            return self

        def __exit__(self, *args: Any) -> None:
            return None

        def open(self) -> None:
            return None

        def close(self) -> None:
            return None

        def send(self, request: Any, **kwargs: Any) -> Any:
            parse_url(request.url)  # what requests does before it connects
            raise ServiceRequestError("would be sent")

    try:
        client = TableClient.from_connection_string(
            connection_string, "sessions", transport=NoNetwork(), retry_total=0
        )
        client.get_entity("p", "r")
    except ServiceRequestError as exc:
        return str(exc) != "would be sent"
    except Exception:
        return True
    raise AssertionError("NoNetwork sends nothing")


@pytest.mark.parametrize("connection_string", CONNECTION_STRINGS)
def test_manage_py_check_refuses_a_connection_string_iff_the_sdk_does(
    connection_string: str,
) -> None:
    table = {"CONNECTION_STRING": connection_string}
    configured = {"SESSION_ENGINE": TABLE_ENGINE, "AZURE_SESSIONS": {"TABLE": table}}
    with override_settings(**configured, DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER):
        messages = [m for m in run_checks() if m.id and m.id.startswith("django_azure_sessions")]
        refused = _sdk_refuses(connection_string)
        assert {m.id for m in messages} == ({"django_azure_sessions.E043"} if refused else set())
        if refused:
            with pytest.raises(SystemCheckError, match=r"django_azure_sessions\.E043"):
                call_command("check")
    for message in messages:
        assert ACCOUNT_KEY not in f"{message.msg} {message.hint}"
        assert "sig=x" not in f"{message.msg} {message.hint}"


def test_a_space_after_semicolon_is_named() -> None:
    table = {"CONNECTION_STRING": f"AccountName=a; AccountKey={ACCOUNT_KEY}"}
    with override_settings(
        SESSION_ENGINE=TABLE_ENGINE,
        AZURE_SESSIONS={"TABLE": table},
        DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER,
    ):
        (message,) = [m for m in run_checks() if str(m.id).startswith("django_azure_sessions")]
    assert message.id == "django_azure_sessions.E043"
    assert "spaces around key names ('accountkey')" in message.msg


def test_a_key_written_with_a_space_is_refused_though_the_sdk_would_ignore_it() -> None:
    """`; EndpointSuffix=...` is an unknown key to azure-data-tables: it would connect to the
    default suffix, another cloud than the one meant."""
    connection_string = (
        f"AccountName=a;AccountKey={ACCOUNT_KEY}; EndpointSuffix=core.chinacloudapi.cn"
    )
    assert not _sdk_refuses(connection_string)
    table = {"CONNECTION_STRING": connection_string}
    assert ids(
        SESSION_ENGINE=TABLE_ENGINE,
        AZURE_SESSIONS={"TABLE": table},
        DEFAULT_EXCEPTION_REPORTER_FILTER=FILTER,
    ) == {"django_azure_sessions.E043"}


# Every id: one problem, created in one place, in its engine's range, listed once in docs/checks.md

PACKAGE = Path(django_azure_sessions.__file__).parent
CHECK_ID = re.compile(r"(?:django_azure_sessions\.)?([EW]0\d\d)")
RANGES = {
    "checks.py": [*range(1, 10), *range(60, 73)],
    "backends/sql_checks.py": range(10, 20),
    "backends/redis_checks.py": range(20, 40),
    "backends/table_checks.py": range(40, 60),
}


def _ids_in_code() -> list[tuple[str, str]]:
    """(id, module) for each string constant of the package that is a check id."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = CHECK_ID.fullmatch(node.value)
                if match:
                    found.append((match[1], path.relative_to(PACKAGE).as_posix()))
    return found


def _ids_in_docs() -> list[str]:
    """The ids of docs/checks.md's table."""
    text = (PACKAGE.parent / "docs" / "checks.md").read_text()
    return re.findall(r"^\| `([EW]0\d\d)` \|", text, flags=re.MULTILINE)


def test_each_id_is_created_once_in_its_engines_module_and_listed_once() -> None:
    in_code = _ids_in_code()
    created = [check_id for check_id, _ in in_code]
    assert sorted(created) == sorted(set(created)), "an id is created in two places"
    for check_id, module in in_code:
        assert module in RANGES, f"{check_id} is created outside the check modules"
        assert int(check_id[1:]) in RANGES[module], f"{check_id} is outside {module}'s range"
    listed = _ids_in_docs()
    assert sorted(listed) == sorted(set(listed)), "an id is listed twice in docs/checks.md"
    assert set(listed) == set(created)
