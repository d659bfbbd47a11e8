"""System checks of ``AZURE_SESSIONS["REDIS"]``: ids E020-E039 and W020-W039.

Run by ``django_azure_sessions.checks`` when the Redis engine is the ``SESSION_ENGINE``. This
module imports without redis-py: the checks then say what to install (E032).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import RedisSettings, section_keys
from .redis_connection import (
    INSTALL_HINT,
    SCHEMES,
    ConnectionSpec,
    import_redis,
    insecure_tls,
    spec_from_settings,
)

# The section's shape, checked in ``checks.py`` for every section: (not a dict, unknown keys).
SHAPE_IDS = ("django_azure_sessions.E038", "django_azure_sessions.E020")

AZURE_HOSTS = (".redis.cache.windows.net", ".redis.azure.net", ".redisenterprise.cache.azure.net")
AZURE_IDLE_TIMEOUT = 600
SECTION = "AZURE_SESSIONS['REDIS']"


def _error(check_id: str, msg: str, hint: str) -> CheckMessage:
    return Error(f"{SECTION}{msg}", hint=hint, id=f"django_azure_sessions.{check_id}")


def _warning(check_id: str, msg: str, hint: str) -> CheckMessage:
    return Warning(f"{SECTION}{msg}", hint=hint, id=f"django_azure_sessions.{check_id}")


def check_redis(section: dict[str, Any]) -> list[CheckMessage]:
    """The REDIS section's checks, run when the Redis engine is the SESSION_ENGINE."""
    try:
        import_redis()
    except ImportError:
        return [_error("E032", " is used, but redis-py is not installed.", INSTALL_HINT)]
    errors = _check_types(section)
    prefix = getattr(settings, "AZURE_SESSIONS", {}).get("KEY_PREFIX", "")
    if isinstance(prefix, str) and ("{" in prefix or "}" in prefix):
        errors.append(
            Error(
                "AZURE_SESSIONS['KEY_PREFIX'] holds a brace, which would make it the Redis "
                "Cluster hash tag of every key: all sessions would sit in one slot.",
                hint='Use a prefix without "{" or "}", like "shop:".',
                id="django_azure_sessions.E033",
            )
        )
    if errors:
        return errors
    try:
        known = {k: v for k, v in section.items() if k in section_keys("REDIS")}
        spec = spec_from_settings(RedisSettings(**known))
    except ImproperlyConfigured as exc:
        # _check_types made sure there is somewhere to connect: what is left is the cache's.
        return [_error("E024", f": {exc}", "See docs/redis.md, 'Settings'.")]
    try:
        spec.validate()
    except (TypeError, ValueError, import_redis().RedisError) as exc:
        return [
            _error(
                "E025",
                f": redis-py rejects the connection options: {exc}",
                "OPTIONS (and a CACHE_ALIAS cache's options) are keyword arguments of "
                "redis-py's connection pool; check their names and values.",
            )
        ]
    return _check_azure(spec)


def _check_types(section: dict[str, Any]) -> list[CheckMessage]:
    errors = _check_where(section)
    for name, check_id in (("OPTIONS", "E035"), ("SENTINEL_OPTIONS", "E029")):
        value = section.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            errors.append(
                _error(
                    check_id,
                    f"['{name}'] must be a dict of keyword arguments.",
                    'For example {"socket_timeout": 2, "max_connections": 50}.',
                )
            )
    errors.extend(_check_cluster(section))
    if not _address_list(section.get("SENTINELS", [])):
        errors.append(
            _error(
                "E027",
                "['SENTINELS'] must be a list of (host, port) pairs.",
                'For example [("10.0.0.1", 26379), ("10.0.0.2", 26379)].',
            )
        )
    service = section.get("SENTINEL_SERVICE_NAME", "mymaster")
    if not isinstance(service, str) or not service:
        errors.append(
            _error(
                "E028",
                "['SENTINEL_SERVICE_NAME'] must be a non-empty string.",
                "The name the sentinels monitor (`sentinel monitor <name> ...`).",
            )
        )
    errors.extend(_check_credential_provider(section.get("CREDENTIAL_PROVIDER")))
    retries = section.get("RETRIES", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        errors.append(
            _error(
                "E031",
                "['RETRIES'] must be an integer from 0 to 10.",
                "The default, 3, rides out a failover's dropped connections in under a second "
                "of backoff.",
            )
        )
    return errors


def _check_where(section: dict[str, Any]) -> list[CheckMessage]:
    """URL, CACHE_ALIAS and SENTINELS: where the engine connects."""
    errors: list[CheckMessage] = []
    url, alias = section.get("URL"), section.get("CACHE_ALIAS")
    if url is None and alias is None and not section.get("SENTINELS", []):
        errors.append(_error("E021", " needs a URL, a CACHE_ALIAS or SENTINELS.", _URL_HINT))
    if url is not None and alias is not None:
        errors.append(
            _error("E034", " has both URL and CACHE_ALIAS.", "Keep the one that says where to go.")
        )
    if url is not None:
        problem = _url_problem(url)
        if problem is not None:
            errors.append(_error("E022", f"['URL'] {problem}", _URL_HINT))
    if alias is not None and (
        not isinstance(alias, str) or alias not in getattr(settings, "CACHES", {})
    ):
        errors.append(
            _error(
                "E023",
                f"['CACHE_ALIAS'] is {alias!r}, not an alias in CACHES.",
                f"Use one of: {', '.join(map(repr, getattr(settings, 'CACHES', {})))}.",
            )
        )
    return errors


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str) or urlsplit(url).scheme not in SCHEMES:
        return "must be a redis://, rediss:// or unix:// URL."
    try:
        import_redis().connection.parse_url(url)
    except ValueError as exc:
        return f"is not a valid Redis URL: {exc}"
    return None


def _check_cluster(section: dict[str, Any]) -> list[CheckMessage]:
    cluster, url = section.get("CLUSTER", False), section.get("URL")
    if not isinstance(cluster, bool):
        return [_error("E026", "['CLUSTER'] must be True or False.", _CLUSTER_HINT)]
    if cluster and section.get("SENTINELS", []):
        return [
            _error(
                "E036", " sets both CLUSTER and SENTINELS.", "A deployment is one or the other."
            )
        ]
    if cluster and isinstance(url, str) and url.startswith("unix:"):
        return [_error("E037", ": a Redis Cluster is not reached by a unix:// URL.", _URL_HINT)]
    return []


_URL_HINT = (
    'Azure Cache for Redis: "rediss://:<access key>@<name>.redis.cache.windows.net:6380/0"; '
    'Azure Managed Redis: "rediss://:<access key>@<name>.<region>.redis.azure.net:10000".'
)
_CLUSTER_HINT = "True for Redis Cluster (Azure Premium clustering, the OSS cluster policy)."


def _address_list(value: Any) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    return all(
        isinstance(item, (list, tuple))
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and not isinstance(item[1], bool)
        for item in value
    )


def _check_credential_provider(value: Any) -> list[CheckMessage]:
    """E030 either way: both are fixed by pointing CREDENTIAL_PROVIDER at a provider."""
    if value is None:
        return []
    hint = (
        "A redis-py CredentialProvider, a callable returning one, or the dotted path of "
        "either; for Entra ID: "
        '"django_azure_sessions.backends.redis.entra_id_credential_provider".'
    )
    problem = None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            problem = f"cannot be imported: {exc}"
    if problem is None and not (
        isinstance(value, import_redis().credentials.CredentialProvider) or callable(value)
    ):
        problem = "is not a credential provider."
    return [] if problem is None else [_error("E030", f"['CREDENTIAL_PROVIDER'] {problem}", hint)]


def _check_azure(spec: ConnectionSpec) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if insecure_tls(spec):
        warnings.append(
            _warning(
                "W020",
                ": TLS is used without verifying the server's certificate and host name.",
                "Remove ssl_cert_reqs / ssl_check_hostname from the options; Azure's "
                "certificates verify with the system's CA bundle.",
            )
        )
    host = (urlsplit(spec.url).hostname or "") if spec.url else ""
    if spec.scheme == "redis" and host.endswith(AZURE_HOSTS):
        warnings.append(
            _warning(
                "W021",
                f": {host} is an Azure cache, reached here without TLS.",
                "Azure disables the non-TLS port by default: use rediss:// (port 6380 on "
                "Azure Cache for Redis, 10000 on Azure Managed Redis).",
            )
        )
    interval = spec.kwargs(asynchronous=False).get("health_check_interval", 0)
    if spec.mode != "cluster" and not 0 < interval < AZURE_IDLE_TIMEOUT:
        warnings.append(
            _warning(
                "W022",
                f": health_check_interval is {interval!r}.",
                "Azure closes connections idle for 10 minutes: keep it between 1 and 599 "
                "seconds (the default is 30) so that a dropped connection is noticed before use.",
            )
        )
    return warnings
