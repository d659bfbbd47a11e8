"""An exception reporter filter that also hides the secrets ``AZURE_SESSIONS`` may hold.

Django's error pages and error e-mails list the settings, hiding values whose names look
secret (``KEY``, ``PASS``, ``TOKEN``...). A Redis URL with an access key, a storage
connection string, a SAS token in an account URL or a credential object have names Django
does not recognise. Use this filter instead of Django's::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "django_azure_sessions.debug.SafeExceptionReporterFilter"

It hides, in every setting and ``request.META`` value and in the local variables of every
frame, on the debug page too (Django's filter cleanses frames only when ``DEBUG`` is off):

- the secret strings of ``AZURE_SESSIONS`` (``secrets.secrets_of``), wherever they were
  copied: redis-py's connection arguments, azure-data-tables' connection string, another
  setting or an environment variable that holds the same URL;
- what looks like a secret in any text (``secrets.redact``): a URL's password, ``password=``,
  ``sig=``, ``AccountKey=``...;
- in the frames of redis-py, the Azure SDK and this package, variables whose names look
  secret (``password``, ``credential``, ``token``, ``auth_args``, ``key``...).
"""

from __future__ import annotations

from collections.abc import Collection
from types import FrameType
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter as DjangoFilter

from .conf import SETTING_NAME
from .secrets import SECRET_NAME, contains_secret, redact, secrets_of, without_secrets

LIBRARIES = frozenset({"redis", "azure", "django_azure_sessions"})
_CREDENTIALS = frozenset({"CREDENTIAL", "CREDENTIAL_PROVIDER"})


def cleansed(config: dict[str, Any], substitute: str) -> dict[str, Any]:
    """A copy of ``AZURE_SESSIONS`` with every secret it may hold replaced by ``substitute``."""
    return _cleansed(config, secrets_of(config), substitute)  # type: ignore[no-any-return]


def _cleansed(value: Any, secrets: Collection[str], substitute: str) -> Any:
    if isinstance(value, str):
        return without_secrets(value, secrets, substitute)
    if isinstance(value, dict):
        return {
            name: substitute
            if item is not None and (name in _CREDENTIALS or SECRET_NAME.search(str(name)))
            else _cleansed(item, secrets, substitute)
            for name, item in value.items()
        }
    if type(value) in (list, tuple):  # not a named tuple: it could not be rebuilt so
        return type(value)(_cleansed(item, secrets, substitute) for item in value)
    return _cleansed_object(value, secrets, substitute)


def _cleansed_object(value: Any, secrets: Collection[str], substitute: str) -> Any:
    try:
        text = repr(value)
    except Exception:  # Django's own pprint shows that it cannot be shown
        return value
    return substitute if contains_secret(text, secrets) or redact(text) != text else value


class SafeExceptionReporterFilter(DjangoFilter):
    """Django's filter, plus the URLs, connection strings and credentials of ``AZURE_SESSIONS``."""

    def _secrets(self) -> set[str]:
        return secrets_of(getattr(settings, SETTING_NAME, {}))

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if key == SETTING_NAME and isinstance(value, dict):
            value = cleansed(value, self.cleansed_substitute)
        value = super().cleanse_setting(key, value)
        if isinstance(value, (dict, list, tuple)):
            return value  # Django cleansed each item through this method
        return _cleansed(value, self._secrets(), self.cleansed_substitute)

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        secrets = self._secrets()
        module = str(tb_frame.f_globals.get("__name__", ""))
        library = module.partition(".")[0] in LIBRARIES
        substitute = self.cleansed_substitute
        return [
            (
                name,
                substitute
                if library and value is not None and SECRET_NAME.search(str(name))
                else _cleansed(value, secrets, substitute),
            )
            for name, value in variables
        ]
