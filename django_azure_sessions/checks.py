"""System checks: every misconfiguration of ``AZURE_SESSIONS`` is an error with an id and a hint.

The one place that registers them. Ids: E001-E009 top level (here), E010-E019 SQL, E020-E039
REDIS, E040-E059 TABLE (in ``backends/<engine>_checks.py``), E060-E070 activity tracking and
timeouts, E071 the user's sessions page, E072 the warm-up (here); warnings W0xx likewise.
Each id is one problem, and docs/checks.md lists every one.
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
    TRACK_CHOICES,
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


def _seconds(value: Any, *, zero: bool = False) -> bool:
    """A number of seconds: above 0 (or 0 too, with ``zero``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return value >= 0 if zero else value > 0


def _optional_seconds(config: dict[str, Any], name: str) -> float | bool | None:
    """The setting if it is None or seconds above 0; False if it is neither."""
    value = config.get(name)
    return value if value is None or _seconds(value) else False


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
    errors.extend(_check_activity(config))
    base_template = config.get("BASE_TEMPLATE", TOP_LEVEL_DEFAULTS["BASE_TEMPLATE"])
    if not isinstance(base_template, str) or not base_template.strip():
        errors.append(
            _error(
                "E071",
                f"{SETTING_NAME}['BASE_TEMPLATE'] must be a template name.",
                'The layout that the "Where you are signed in" page extends, like '
                '"base.html"; it fills its blocks title and content. The default is the '
                'package\'s own, "django_azure_sessions/base.html".',
            )
        )
    if not isinstance(config.get("WARM_UP", True), bool):
        errors.append(
            _error(
                "E072",
                f"{SETTING_NAME}['WARM_UP'] must be True or False.",
                "True (the default) builds the session store's client when Django starts, "
                "without connecting; False builds it on the first request.",
            )
        )
    for name in SECTIONS:
        section = config.get(name, {})
        not_a_dict, unknown_keys = SECTION_SHAPE_IDS[name]
        if not isinstance(section, dict):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a dict.",
                    hint="See the settings reference in README.md and docs/.",
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


def _check_activity(config: dict[str, Any]) -> list[CheckMessage]:
    """TRACK, IP_PREFIX, TRUSTED_PROXIES, ACTIVITY_INTERVAL and the timeouts (E060-E069)."""
    errors: list[CheckMessage] = []
    track = config.get("TRACK", TOP_LEVEL_DEFAULTS["TRACK"])
    if isinstance(track, str) or not isinstance(track, (set, frozenset, list, tuple)):
        errors.append(
            _error(
                "E060",
                f"{SETTING_NAME}['TRACK'] must be a set.",
                f"A set of {', '.join(sorted(TRACK_CHOICES))}; the default is "
                '{"user_agent", "last_activity"}, and set() records nothing.',
            )
        )
        track = TOP_LEVEL_DEFAULTS["TRACK"]
    elif unknown_items := [i for i in track if not (isinstance(i, str) and i in TRACK_CHOICES)]:
        unknown = ", ".join(sorted(map(repr, unknown_items)))
        errors.append(
            _error(
                "E061",
                f"{SETTING_NAME}['TRACK'] has unknown items: {unknown}.",
                f"Known items: {', '.join(sorted(TRACK_CHOICES))}.",
            )
        )
    prefix = config.get("IP_PREFIX", TOP_LEVEL_DEFAULTS["IP_PREFIX"])
    if prefix is not None and not (
        isinstance(prefix, (tuple, list))
        and len(prefix) == 2
        and all(isinstance(bits, int) and not isinstance(bits, bool) for bits in prefix)
        and 0 <= prefix[0] <= 32
        and 0 <= prefix[1] <= 128
    ):
        errors.append(
            _error(
                "E062",
                f"{SETTING_NAME}['IP_PREFIX'] must be None or a pair (IPv4 bits, IPv6 bits).",
                "Like (24, 48), the default: 0-32 bits of an IPv4 and 0-128 of an IPv6 "
                "address are kept. None keeps whole addresses.",
            )
        )
    proxies = config.get("TRUSTED_PROXIES", 0)
    if not (isinstance(proxies, int) and not isinstance(proxies, bool) and 0 <= proxies <= 10):
        errors.append(
            _error(
                "E063",
                f"{SETTING_NAME}['TRUSTED_PROXIES'] must be an integer from 0 to 10.",
                "How many proxies in front of the site append to X-Forwarded-For (Azure "
                "Front Door, Application Gateway...): 0 trusts none of its entries.",
            )
        )
    interval = config.get("ACTIVITY_INTERVAL", TOP_LEVEL_DEFAULTS["ACTIVITY_INTERVAL"])
    if not _seconds(interval, zero=True):
        errors.append(
            _error(
                "E064",
                f"{SETTING_NAME}['ACTIVITY_INTERVAL'] must be a number of seconds, 0 or more.",
                "The default, 300, writes a session read by every request at most every "
                "5 minutes; 0 writes it on every request.",
            )
        )
        interval = None
    idle = _optional_seconds(config, "IDLE_TIMEOUT")
    if idle is False:
        errors.append(
            _error(
                "E065",
                f"{SETTING_NAME}['IDLE_TIMEOUT'] must be None or a number of seconds above 0.",
                "Like 1800: a session with no request for 30 minutes is over.",
            )
        )
    if _optional_seconds(config, "ABSOLUTE_TIMEOUT") is False:
        errors.append(
            _error(
                "E066",
                f"{SETTING_NAME}['ABSOLUTE_TIMEOUT'] must be None or a number of seconds above 0.",
                "Like 43200: a session is over 12 hours after sign-in, however active.",
            )
        )
    cap = config.get("MAX_SESSIONS_PER_USER")
    if cap is not None and not _positive_int(cap):
        errors.append(
            _error(
                "E067",
                f"{SETTING_NAME}['MAX_SESSIONS_PER_USER'] must be None or an integer above 0.",
                "Like 5: at sign-in, the user's sessions beyond the 5 most recently active "
                "are signed out.",
            )
        )
    if idle and interval is not None and interval > idle:
        errors.append(
            _error(
                "E068",
                f"{SETTING_NAME}['ACTIVITY_INTERVAL'] ({interval} s) is longer than "
                f"IDLE_TIMEOUT ({idle} s): active sessions would time out.",
                "Make ACTIVITY_INTERVAL at most IDLE_TIMEOUT (a tenth of it is plenty).",
            )
        )
    if idle and isinstance(track, (set, frozenset, list, tuple)) and "last_activity" not in track:
        errors.append(
            _error(
                "E069",
                f"{SETTING_NAME}['IDLE_TIMEOUT'] is set, but TRACK lacks \"last_activity\": "
                "the activity it measures would never be written.",
                'Add "last_activity" to TRACK, or drop IDLE_TIMEOUT.',
            )
        )
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
    if isinstance(config, dict) and config.get("IDLE_TIMEOUT") is not None:
        return [
            _error(
                "E070",
                f'{SETTING_NAME}["IDLE_TIMEOUT"] is set, but MIDDLEWARE has Django\'s '
                "SessionMiddleware, which never writes a session's activity: sessions that "
                "are only read would time out while in use.",
                f"Replace {DJANGO_MIDDLEWARE!r} by {OUR_MIDDLEWARE!r} in MIDDLEWARE.",
            )
        ]
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
