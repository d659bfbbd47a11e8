"""System checks: every misconfiguration of ``AZURE_SESSIONS`` is an error with an id and a hint.

The one place that registers them. Ids: E001-E009 top level (here), E010-E019 SQL, E020-E039
REDIS, E040-E059 TABLE (in ``backends/<engine>_checks.py``); warnings W0xx likewise. Each id
is one problem, and README.md's "System checks" table lists every one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .backends import redis_checks, sql_checks, table_checks
from .conf import (
    ON_UNAVAILABLE_CHOICES,
    SECTIONS,
    SETTING_NAME,
    TOP_LEVEL_DEFAULTS,
    section_keys,
)

ENGINE_PREFIX = "django_azure_sessions.backends."
MAX_TIMEOUT = 300
DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_azure_sessions.middleware.SessionMiddleware"
SectionCheck = Callable[[dict[str, Any]], list[CheckMessage]]


def _error(check_id: str, msg: str, hint: str) -> Error:
    return Error(msg, hint=hint, id=f"django_azure_sessions.{check_id}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


SECTION_CHECKS: dict[str, SectionCheck] = {
    "SQL": sql_checks.check_sql,
    "REDIS": redis_checks.check_redis,
    "TABLE": table_checks.check_table,
}
# Each section's (not a dict, unknown keys) ids, from its engine's range.
SECTION_SHAPE_IDS = {
    "SQL": sql_checks.SHAPE_IDS,
    "REDIS": redis_checks.SHAPE_IDS,
    "TABLE": table_checks.SHAPE_IDS,
}


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    config = getattr(settings, SETTING_NAME, {})
    if not isinstance(config, dict):
        return [
            _error(
                "E001",
                f"{SETTING_NAME} must be a dict, not {type(config).__name__}.",
                'For example: AZURE_SESSIONS = {"REDIS": {"URL": "rediss://..."}}.',
            )
        ]
    errors: list[CheckMessage] = []
    known = TOP_LEVEL_DEFAULTS.keys() | SECTIONS.keys()
    for key in sorted(config.keys() - known):
        errors.append(
            _error(
                "E002",
                f"{SETTING_NAME} has an unknown key {key!r}.",
                f"Known keys: {sorted(known)}.",
            )
        )
    prefix = config.get("KEY_PREFIX", "")
    if not isinstance(prefix, str) or len(prefix) > 128:
        errors.append(
            _error(
                "E003",
                f"{SETTING_NAME}['KEY_PREFIX'] must be a string of at most 128 characters.",
                'Something short that names the site, like "shop:".',
            )
        )
    if not isinstance(config.get("HASH_KEYS", True), bool):
        errors.append(
            _error("E004", f"{SETTING_NAME}['HASH_KEYS'] must be True or False.", "Leave it True.")
        )
    if not _positive_int(config.get("CONFLICT_RETRIES", 20)):
        errors.append(
            _error(
                "E005",
                f"{SETTING_NAME}['CONFLICT_RETRIES'] must be a positive integer.",
                "The default, 20, absorbs bursts of concurrent requests on one session.",
            )
        )
    timeout = config.get("TIMEOUT", 5)
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        errors.append(
            _error(
                "E007",
                f"{SETTING_NAME}['TIMEOUT'] must be a number of seconds above 0 and at most "
                f"{MAX_TIMEOUT}.",
                "The default, 5, bounds what a stalled store costs a request, retries included.",
            )
        )
    if config.get("ON_UNAVAILABLE", "raise") not in ON_UNAVAILABLE_CHOICES:
        errors.append(
            _error(
                "E008",
                f'{SETTING_NAME}[\'ON_UNAVAILABLE\'] must be "raise" or "degrade".',
                '"raise" answers 503 while the store is down; "degrade" serves the request '
                "with an empty session that writes nothing.",
            )
        )
    for name in SECTIONS:
        section = config.get(name, {})
        not_a_dict, unknown_keys = SECTION_SHAPE_IDS[name]
        if not isinstance(section, dict):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a dict.",
                    hint="See the README.",
                    id=not_a_dict,
                )
            )
            continue
        unknown = sorted(section.keys() - section_keys(name))
        if unknown:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] has unknown keys: {', '.join(unknown)}.",
                    hint=f"Known keys: {', '.join(sorted(section_keys(name)))}.",
                    id=unknown_keys,
                )
            )
        if name in SECTION_CHECKS and _engine_in_use(name):
            errors.extend(SECTION_CHECKS[name](section))
    return errors


def _engine_in_use(section: str) -> bool:
    return str(getattr(settings, "SESSION_ENGINE", "")) == ENGINE_PREFIX + section.lower()


@register(Tags.compatibility)
def check_installed(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if not str(getattr(settings, "SESSION_ENGINE", "")).startswith(ENGINE_PREFIX):
        return []
    from django.apps import apps as registry

    apps = [config.name for config in registry.get_app_configs()]  # also for AppConfig paths
    if "django_azure_sessions" not in apps:
        return [
            _error(
                "E006",
                "SESSION_ENGINE is a django_azure_sessions engine, but the app is not installed.",
                "Add 'django_azure_sessions' to INSTALLED_APPS.",
            )
        ]
    if "django.contrib.sessions" in apps and apps.index("django.contrib.sessions") < apps.index(
        "django_azure_sessions"
    ):
        return [
            Warning(
                "django.contrib.sessions is listed before django_azure_sessions.",
                hint="List django_azure_sessions first so that its management commands win.",
                id="django_azure_sessions.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_middleware(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if not str(getattr(settings, "SESSION_ENGINE", "")).startswith(ENGINE_PREFIX):
        return []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if DJANGO_MIDDLEWARE not in middleware:
        return []
    config = getattr(settings, SETTING_NAME, {})
    if isinstance(config, dict) and config.get("ON_UNAVAILABLE") == "degrade":
        return [
            _error(
                "E009",
                f'{SETTING_NAME}["ON_UNAVAILABLE"] is "degrade", but MIDDLEWARE has Django\'s '
                "SessionMiddleware, which deletes the cookie of a session it finds empty: "
                "every user would be signed out during an outage.",
                f"Replace {DJANGO_MIDDLEWARE!r} by {OUR_MIDDLEWARE!r} in MIDDLEWARE.",
            )
        ]
    return [
        Warning(
            "MIDDLEWARE has Django's SessionMiddleware: a session store outage then answers "
            "500 instead of 503 with Retry-After.",
            hint=f"Replace {DJANGO_MIDDLEWARE!r} by {OUR_MIDDLEWARE!r} (a subclass of it).",
            id="django_azure_sessions.W003",
        )
    ]


@register(Tags.security)
def check_error_reports(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    from .debug import SafeExceptionReporterFilter
    from .secrets import secret_places

    config = getattr(settings, SETTING_NAME, {})
    places = secret_places(config)
    if not places:
        return []
    try:
        reporter_filter = import_string(settings.DEFAULT_EXCEPTION_REPORTER_FILTER)
    except ImportError:
        return []  # Django reports that one itself
    if isinstance(reporter_filter, type) and issubclass(
        reporter_filter, SafeExceptionReporterFilter
    ):
        return []
    where = ", ".join(sorted(places))
    return [
        Warning(
            f"{SETTING_NAME} holds secrets ({where}: a password, an access key, a SAS token "
            "or a credential) that Django's error pages and error e-mails would show.",
            hint="Set DEFAULT_EXCEPTION_REPORTER_FILTER = "
            '"django_azure_sessions.debug.SafeExceptionReporterFilter" (it extends Django\'s).',
            id="django_azure_sessions.W002",
        )
    ]
