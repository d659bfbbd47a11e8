"""Settings of django-azure-sessions, read live from ``settings.AZURE_SESSIONS``.

Every key has a default; ``checks.py`` reports wrong values as system check errors, so the
properties here may assume well-formed input and stay cheap (they run on every request).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from django.conf import settings as django_settings
from django.core.signals import setting_changed

SETTING_NAME = "AZURE_SESSIONS"


@dataclass(frozen=True)
class SQLSettings:
    DATABASE: str = "default"
    # Enough rows a statement that a backlog goes as fast as one unbounded DELETE; few enough
    # to hold locks for milliseconds and to stay under SQL Server's lock escalation (5,000).
    CLEAR_BATCH_SIZE: int = 2500


@dataclass(frozen=True)
class RedisSettings:
    URL: str | None = field(default=None, repr=False)  # may hold the access key
    CACHE_ALIAS: str | None = None
    OPTIONS: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold a password
    CLUSTER: bool = False
    SENTINELS: list[tuple[str, int]] = field(default_factory=list)
    SENTINEL_SERVICE_NAME: str = "mymaster"
    SENTINEL_OPTIONS: dict[str, Any] = field(default_factory=dict, repr=False)
    CREDENTIAL_PROVIDER: Any = field(default=None, repr=False)
    RETRIES: int = 3


@dataclass(frozen=True)
class TableSettings:
    CONNECTION_STRING: str | None = field(default=None, repr=False)  # holds the account key
    ACCOUNT_URL: str | None = field(default=None, repr=False)  # may hold a SAS token
    CREDENTIAL: Any = field(default=None, repr=False)
    TABLE_NAME: str = "djangosessions"
    CREATE_TABLE: bool = True
    OPTIONS: dict[str, Any] = field(default_factory=dict)


SECTIONS: dict[str, type[Any]] = {
    "SQL": SQLSettings,
    "REDIS": RedisSettings,
    "TABLE": TableSettings,
}

TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "KEY_PREFIX": "",
    "HASH_KEYS": True,
    "CONFLICT_RETRIES": 20,
    "TIMEOUT": 5,
    "ON_UNAVAILABLE": "raise",
    # Activity and device tracking, timeouts and the per-user cap (see core/activity.py)
    "TRACK": frozenset({"user_agent", "last_activity"}),
    "IP_PREFIX": (24, 48),
    "TRUSTED_PROXIES": 0,
    "ACTIVITY_INTERVAL": 300,
    "IDLE_TIMEOUT": None,
    "ABSOLUTE_TIMEOUT": None,
    "MAX_SESSIONS_PER_USER": None,
    # The layout that "Where you are signed in" (views.py) extends
    "BASE_TEMPLATE": "django_azure_sessions/base.html",
    # Build the store's client when Django starts (apps.py), not on a worker's first request
    "WARM_UP": True,
}
ON_UNAVAILABLE_CHOICES = ("raise", "degrade")
TRACK_CHOICES = frozenset({"user_agent", "ip", "last_activity"})


def section_keys(name: str) -> frozenset[str]:
    return frozenset(f.name for f in fields(SECTIONS[name]))


K = TypeVar("K")
V = TypeVar("V")


class SettingsCache(Generic[K, V]):
    """Values computed from Django settings, kept until ``setting_changed`` names one of
    ``settings`` (as Django does for its own cached settings, e.g. the time zone).

    A value computed while one of the settings changes is returned but not kept: the
    generation counter tells that a change came in between.
    """

    def __init__(self, settings: frozenset[str], build: Callable[[K], V]) -> None:
        self._settings = settings
        self._build = build
        self._values: dict[K, V] = {}
        self._generation = 0
        self._lock = threading.Lock()
        setting_changed.connect(self._changed, weak=False)

    def get(self, key: K) -> V:
        try:
            return self._values[key]
        except KeyError:
            generation = self._generation
            value = self._build(key)
            with self._lock:
                if generation == self._generation:
                    self._values[key] = value
            return value

    def _changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in self._settings:
            with self._lock:
                self._generation += 1
                self._values.clear()


class Settings:
    """Typed view of ``settings.AZURE_SESSIONS``, read live: ``override_settings`` just works.

    Nothing is cached here: Django's settings object keeps what it has read already.
    """

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(django_settings, SETTING_NAME, None)
        return value if isinstance(value, dict) else {}

    def _get(self, key: str) -> Any:
        return self.raw.get(key, TOP_LEVEL_DEFAULTS[key])

    @property
    def KEY_PREFIX(self) -> str:
        return str(self._get("KEY_PREFIX"))

    @property
    def HASH_KEYS(self) -> bool:
        return bool(self._get("HASH_KEYS"))

    @property
    def CONFLICT_RETRIES(self) -> int:
        return int(self._get("CONFLICT_RETRIES"))

    @property
    def TIMEOUT(self) -> float:
        """Seconds one load, save or delete may take, retries and reconnects included."""
        return float(self._get("TIMEOUT"))

    @property
    def ON_UNAVAILABLE(self) -> str:
        return str(self._get("ON_UNAVAILABLE"))

    @property
    def TRACK(self) -> frozenset[str]:
        """What the middleware records of each session's requests (``TRACK_CHOICES``)."""
        return frozenset(self._get("TRACK"))

    @property
    def IP_PREFIX(self) -> tuple[int, int] | None:
        """How many leading bits of an IPv4 and an IPv6 address are kept (None: all)."""
        value = self._get("IP_PREFIX")
        return None if value is None else (int(value[0]), int(value[1]))

    @property
    def TRUSTED_PROXIES(self) -> int:
        return int(self._get("TRUSTED_PROXIES"))

    @property
    def ACTIVITY_INTERVAL(self) -> float:
        """Seconds between two writes of a session's activity when nothing else changed."""
        return float(self._get("ACTIVITY_INTERVAL"))

    @property
    def IDLE_TIMEOUT(self) -> float | None:
        value = self._get("IDLE_TIMEOUT")
        return None if value is None else float(value)

    @property
    def ABSOLUTE_TIMEOUT(self) -> float | None:
        value = self._get("ABSOLUTE_TIMEOUT")
        return None if value is None else float(value)

    @property
    def MAX_SESSIONS_PER_USER(self) -> int | None:
        value = self._get("MAX_SESSIONS_PER_USER")
        return None if value is None else int(value)

    @property
    def BASE_TEMPLATE(self) -> str:
        """The template the user's sessions page extends: it fills the blocks ``title`` and
        ``content``."""
        return str(self._get("BASE_TEMPLATE"))

    @property
    def WARM_UP(self) -> bool:
        """Whether ``django.setup()`` builds the session store's client (never connecting)."""
        return bool(self._get("WARM_UP"))

    def _section(self, name: str) -> Any:
        value = self.raw.get(name) or {}
        known = section_keys(name)
        return SECTIONS[name](**{k: v for k, v in value.items() if k in known})

    @property
    def SQL(self) -> SQLSettings:
        return self._section("SQL")  # type: ignore[no-any-return]

    @property
    def REDIS(self) -> RedisSettings:
        return self._section("REDIS")  # type: ignore[no-any-return]

    @property
    def TABLE(self) -> TableSettings:
        return self._section("TABLE")  # type: ignore[no-any-return]


app_settings = Settings()
