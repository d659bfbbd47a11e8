"""Settings of the demo site. Not for production: the secret key and demo user are public."""

from __future__ import annotations

import os
from pathlib import Path

from .environment import cache_settings, database_from_url, session_settings

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DAS_SECRET_KEY", "demo-only-not-secret-8c1f2b7d")
DEBUG = os.environ.get("DAS_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    # Before django.contrib.sessions, so that its management commands are the ones that run.
    "django_azure_sessions",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "testproject.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_azure_sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "testproject.demo.context_processors.session_engine",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(os.environ.get("DAS_DATABASE_URL"), BASE_DIR / "db.sqlite3")
}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DAS_CONN_MAX_AGE", "0"))
CACHES = cache_settings(os.environ)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_ENGINE, AZURE_SESSIONS = session_settings(os.environ)
# AZURE_SESSIONS may hold a Redis password or a storage key: keep them off error pages.
DEFAULT_EXCEPTION_REPORTER_FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"

if os.environ.get("DAS_LOG_ERRORS") == "1":
    # With DEBUG off Django prints no server error; benchmarks.load keeps them in its logs.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {
            "django.request": {"handlers": ["stderr"], "level": "ERROR"},
            "django_azure_sessions": {"handlers": ["stderr"], "level": "WARNING"},
        },
    }

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
