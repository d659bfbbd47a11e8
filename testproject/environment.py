"""The demo's store, chosen by environment variables (see ``scripts/demo`` and docs/demo.md).

``DAS_ENGINE`` is ``sql`` (the default), ``redis`` or ``table``; ``DAS_DATABASE_URL``,
``DAS_REDIS_URL`` and ``DAS_TABLE_CONNECTION_STRING`` point the engines at their stores.
``django-db`` and ``django-cache`` select Django's own engines instead (the latter on a
django-redis cache at ``DAS_REDIS_URL``), for comparisons such as ``benchmarks.load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

ENGINES = ("sql", "redis", "table")
DJANGO_ENGINES = {
    "django-db": "django.contrib.sessions.backends.db",
    "django-cache": "django.contrib.sessions.backends.cache",
}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Azurite's documented development account: a well-known public key, not a secret.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

DATABASE_ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
    "mssql": "mssql",
}


def session_settings(env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """``SESSION_ENGINE``, and ``AZURE_SESSIONS`` with every engine's store configured.

    Only ``DAS_ENGINE``'s store serves the site; the others are there for the commands that
    name an engine, such as ``migratesessions --from sql --to redis``. A store nobody uses is
    never connected to.
    """
    engine = _engine(env)
    config: dict[str, Any] = {
        "KEY_PREFIX": env.get("DAS_KEY_PREFIX", "demo:"),
        # "Where you are signed in" inside the demo's own layout
        "BASE_TEMPLATE": "demo/base.html",
        "SQL": {"DATABASE": "default"},
        "REDIS": {"URL": env.get("DAS_REDIS_URL", DEFAULT_REDIS_URL)},
        "TABLE": {
            "CONNECTION_STRING": env.get("DAS_TABLE_CONNECTION_STRING", AZURITE_CONNECTION_STRING),
            "TABLE_NAME": env.get("DAS_TABLE_NAME", "demosessions"),
        },
    }
    if engine in DJANGO_ENGINES:
        return DJANGO_ENGINES[engine], config
    return f"django_azure_sessions.backends.{engine}", config


def cache_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """``CACHES``: django-redis for ``DAS_ENGINE=django-cache``, Django's default otherwise."""
    if _engine(env) != "django-cache":
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": env.get("DAS_REDIS_URL", DEFAULT_REDIS_URL),
            "KEY_PREFIX": env.get("DAS_KEY_PREFIX", "demo:"),
        }
    }


def _engine(env: Mapping[str, str]) -> str:
    engine = env.get("DAS_ENGINE", "sql").strip().lower() or "sql"
    if engine not in ENGINES and engine not in DJANGO_ENGINES:
        names = ", ".join((*ENGINES, *DJANGO_ENGINES))
        raise ImproperlyConfigured(f"DAS_ENGINE is {engine!r}; use one of {names}.")
    return engine


def database_from_url(url: str | None, sqlite_default: Path) -> dict[str, Any]:
    """A ``DATABASES`` entry from a URL such as ``postgres://user:password@host:5432/name``.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` name SQLite files; query
    parameters become ``OPTIONS``. No URL: SQLite in ``sqlite_default``.
    """
    if not url:
        return {"ENGINE": DATABASE_ENGINES["sqlite"], "NAME": sqlite_default}
    parts = urlsplit(url)
    if parts.scheme not in DATABASE_ENGINES:
        raise ImproperlyConfigured(
            f"DAS_DATABASE_URL has scheme {parts.scheme!r}; "
            f"use one of {', '.join(sorted(DATABASE_ENGINES))}."
        )
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        return {
            "ENGINE": DATABASE_ENGINES["sqlite"],
            "NAME": unquote(parts.path[1:]) or sqlite_default,
        }
    if parts.scheme in ("mysql", "mariadb"):
        options.setdefault("charset", "utf8mb4")
    return {
        "ENGINE": DATABASE_ENGINES[parts.scheme],
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }
