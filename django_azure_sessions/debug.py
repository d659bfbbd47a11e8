"""An exception reporter filter that also hides the secrets ``AZURE_SESSIONS`` may hold.

Django's error pages and error e-mails list the settings, hiding values whose names look
secret (``KEY``, ``PASS``, ``TOKEN``...). A Redis URL with an access key, a storage
connection string, a SAS token in an account URL or a credential object have names Django
does not recognise. Use this filter instead of Django's::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.views.debug import SafeExceptionReporterFilter as DjangoFilter

from .conf import SETTING_NAME

_SAS_OR_KEY = re.compile(r"(?i)((?:^|[?&;])(?:sig|accountkey|sharedaccesssignature)=)[^&;]*")


def _url_without_password(url: str, substitute: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL that can be taken apart: show none of it
        return substitute
    if parts.password is None:
        return _SAS_OR_KEY.sub(rf"\g<1>{substitute}", url)
    user = parts.username or ""
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    netloc = f"{user}:{substitute}@{host}"
    return _SAS_OR_KEY.sub(rf"\g<1>{substitute}", urlunsplit(parts._replace(netloc=netloc)))


def cleansed(config: dict[str, Any], substitute: str) -> dict[str, Any]:
    """A copy of ``AZURE_SESSIONS`` with every secret it may hold replaced by ``substitute``."""
    clean = dict(config)
    redis = config.get("REDIS")
    if isinstance(redis, dict):
        redis = clean["REDIS"] = dict(redis)
        if isinstance(redis.get("URL"), str):
            redis["URL"] = _url_without_password(redis["URL"], substitute)
        if redis.get("CREDENTIAL_PROVIDER") is not None:
            redis["CREDENTIAL_PROVIDER"] = substitute
    table = config.get("TABLE")
    if isinstance(table, dict):
        table = clean["TABLE"] = dict(table)
        if isinstance(table.get("CONNECTION_STRING"), str):
            table["CONNECTION_STRING"] = _SAS_OR_KEY.sub(
                rf"\g<1>{substitute}", table["CONNECTION_STRING"]
            )
        if isinstance(table.get("ACCOUNT_URL"), str):
            table["ACCOUNT_URL"] = _url_without_password(table["ACCOUNT_URL"], substitute)
        if table.get("CREDENTIAL") is not None:
            table["CREDENTIAL"] = substitute
    return clean


class SafeExceptionReporterFilter(DjangoFilter):
    """Django's filter, plus the URLs, connection strings and credentials of ``AZURE_SESSIONS``."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if key == SETTING_NAME and isinstance(value, dict):
            value = cleansed(value, self.cleansed_substitute)
        return super().cleanse_setting(key, value)
