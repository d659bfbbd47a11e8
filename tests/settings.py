"""Settings for the test suite: SQLite, PostgreSQL and MariaDB side by side.

Test databases get a per-run name so that several runs on one machine do not collide.
Connection details come from the environment (``DAS_PG_*``, ``DAS_MYSQL_*``, ``DAS_REDIS_URL``)
with the defaults of the development machine.
"""

from __future__ import annotations

import os
from typing import Any

RUN_ID = os.environ.setdefault("DAS_TEST_RUN", str(os.getpid()))

SECRET_KEY = "tests-secret-key-not-for-production"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django_azure_sessions",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django_azure_sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
SESSION_ENGINE = "django_azure_sessions.backends.sql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {"NAME": f"file:das-{RUN_ID}?mode=memory&cache=shared"},
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DAS_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DAS_PG_PORT", "5432"),
        "USER": os.environ.get("DAS_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("DAS_PG_PASSWORD", ""),
        "NAME": "test",
        "TEST": {"NAME": f"test_das_{RUN_ID}"},
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ.get("DAS_MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DAS_MYSQL_PORT", "3306"),
        "USER": os.environ.get("DAS_MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("DAS_MYSQL_PASSWORD", ""),
        "NAME": "test",
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"NAME": f"test_das_{RUN_ID}", "CHARSET": "utf8mb4"},
    },
}

# The same test databases through a TCP proxy that tests stall: tests/fixtures/sql_proxy.py
# starts one proxy per server and sets HOST and PORT. connect_timeout bounds a reconnect
# through a stalled network (libpq's minimum is 2 s).
for _server in ("postgres", "mariadb"):
    DATABASES[f"{_server}_proxy"] = {
        **DATABASES[_server],
        "OPTIONS": {**DATABASES[_server].get("OPTIONS", {}), "connect_timeout": 2},
        "TEST": {"MIRROR": _server},
    }

REDIS_URL = os.environ.get("DAS_REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django.security": {"handlers": ["null"], "propagate": True}},
}
