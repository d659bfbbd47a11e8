"""System checks and live settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_azure_sessions.conf import app_settings

SQL_ENGINE = "django_azure_sessions.backends.sql"


def ids(**overrides: Any) -> set[str]:
    with override_settings(**overrides):
        return {message.id for message in run_checks() if message.id}


def test_checks_are_registered_and_bound_to_manage_py_check() -> None:
    with (
        override_settings(AZURE_SESSIONS={"HASH_KEYS": "yes"}),
        pytest.raises(SystemCheckError, match=r"django_azure_sessions\.E004"),
    ):
        call_command("check")


def test_good_settings_pass() -> None:
    assert not {
        i
        for i in ids(AZURE_SESSIONS={"KEY_PREFIX": "shop:", "SQL": {"DATABASE": "postgres"}})
        if i.startswith("django_azure_sessions")
    }


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
        ({"SQL": "default"}, "E010"),
        ({"SQL": {"DATABSE": "default"}}, "E010"),
        ({"SQL": {"DATABASE": "nowhere"}}, "E011"),
        ({"SQL": {"CLEAR_BATCH_SIZE": -1}}, "E012"),
        ({"SQL": {"CLEAR_BATCH_SIZE": "1000"}}, "E012"),
    ],
)
def test_each_mistake_has_its_error(azure_sessions: Any, expected: str) -> None:
    found = ids(SESSION_ENGINE=SQL_ENGINE, AZURE_SESSIONS=azure_sessions)
    assert f"django_azure_sessions.{expected}" in found


def test_engine_checks_apply_only_to_the_engine_in_use() -> None:
    found = ids(
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        AZURE_SESSIONS={"SQL": {"DATABASE": "nowhere"}},
    )
    assert "django_azure_sessions.E011" not in found


def test_engine_without_the_app_installed(settings: Any) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "django_azure_sessions"]
    with override_settings(SESSION_ENGINE=SQL_ENGINE, INSTALLED_APPS=apps):
        from django.conf import settings as live
        from django.core.checks.registry import registry

        messages = registry.run_checks()
        assert "django_azure_sessions.E006" in {m.id for m in messages}
        assert live.SESSION_ENGINE == SQL_ENGINE


def test_app_listed_after_contrib_sessions_warns(settings: Any) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "django_azure_sessions"]
    found = ids(SESSION_ENGINE=SQL_ENGINE, INSTALLED_APPS=[*apps, "django_azure_sessions"])
    assert "django_azure_sessions.W001" in found


def test_settings_follow_override_settings() -> None:
    assert app_settings.KEY_PREFIX == ""
    assert app_settings.HASH_KEYS is True
    assert app_settings.CONFLICT_RETRIES == 20
    assert app_settings.SQL.DATABASE == "default"
    assert app_settings.SQL.CLEAR_BATCH_SIZE == 1000
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
    assert not {i for i in found if i.startswith("django_azure_sessions")}
