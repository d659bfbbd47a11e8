"""Settings for ``python -m benchmarks.run``: PostgreSQL as the default database."""

from __future__ import annotations

import os

SECRET_KEY = "benchmark-secret-key-benchmark-secret-key"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django_azure_sessions",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
SYNCHRONOUS_COMMIT = os.environ.get("DAS_BENCH_SYNCHRONOUS_COMMIT", "off")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DAS_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DAS_PG_PORT", "5432"),
        "USER": os.environ.get("DAS_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("DAS_PG_PASSWORD", ""),
        "NAME": "test",
        "CONN_MAX_AGE": None,
        # Every contender's writes pay this machine's WAL flush unless it is turned off;
        # `--durable` in benchmarks.run keeps it on (see docs/benchmarks.md).
        "OPTIONS": {"options": f"-c synchronous_commit={SYNCHRONOUS_COMMIT}"},
        "TEST": {"NAME": "das_benchmarks"},
    },
}
if os.environ.get("DAS_BENCH_PREPARED"):
    # `--prepared`: what docs/sql.md recommends with persistent connections.
    DATABASES["default"]["OPTIONS"] |= {"server_side_binding": True, "prepare_threshold": 5}
REDIS_URL = os.environ.get("DAS_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
AZURE_SESSIONS = {"KEY_PREFIX": "bench:"}
