"""Connections of the Redis engine: what ``AZURE_SESSIONS["REDIS"]`` describes, and its clients.

The settings are turned into a ``ConnectionSpec`` once; the spec builds a sync client (one per
process) and async clients (one per running event loop). Keyword arguments are merged in this
order, each overriding the one before: the Azure-fit defaults below, the connection settings of
the django-redis cache named by ``CACHE_ALIAS``, then ``OPTIONS``.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import RedisSettings, section_keys

INSTALL_HINT = "pip install 'django-azure-sessions[redis]'"
SCHEMES = ("redis", "rediss", "unix")

# Azure closes connections idle for 10 minutes and moves the endpoint during patching: probe
# idle connections well before that and bound every wait. redis-py itself never retries (a
# Retry of 0): the engine's own loop retries, with jittered exponential backoff, within the
# operation's budget (AZURE_SESSIONS["TIMEOUT"]), which also caps both socket timeouts. The
# protocol is redis-py's default (RESP3 brings Azure Managed Redis' maintenance notifications).
DEFAULTS: dict[str, Any] = {"socket_timeout": 5, "health_check_interval": 30}
TCP_DEFAULTS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_keepalive": True}
TLS_DEFAULTS: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
BACKOFF_BASE = 0.05  # seconds; attempt n waits about BACKOFF_BASE * 2**n, at most BACKOFF_CAP
BACKOFF_CAP = 1.0

DJANGO_REDIS = "django_redis.cache.RedisCache"
DJANGO_BUILTIN_REDIS = "django.core.cache.backends.redis.RedisCache"
_DJANGO_REDIS_OPTIONS = {
    "USERNAME": "username",
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}
_UNSHAREABLE_CLIENTS = ("ShardClient",)
_DJANGO_POOL_CHOICES = ("parser_class", "pool_class")

Mode = Literal["standalone", "cluster", "sentinel"]


def import_redis() -> Any:
    """``redis``, or an ImportError that says what to install."""
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.asyncio.retry
        import redis.asyncio.sentinel
        import redis.backoff
        import redis.cluster
        import redis.connection
        import redis.credentials
        import redis.exceptions
        import redis.retry
        import redis.sentinel
    except ImportError as exc:
        raise ImportError(f"The Redis session engine needs redis-py: {INSTALL_HINT}") from exc
    return redis


@dataclasses.dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to build a client, sync or async, for one configuration."""

    mode: Mode
    url: str | None = dataclasses.field(repr=False)
    options: Mapping[str, Any] = dataclasses.field(repr=False)
    retries: int = 3
    sentinels: Sequence[tuple[str, int]] = ()
    service_name: str = "mymaster"
    sentinel_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    credential_provider: Any = dataclasses.field(default=None, repr=False)
    timeout: float = 5.0  # AZURE_SESSIONS["TIMEOUT"]: no single wait may be longer

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme if self.url else "redis"

    def kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        """Client keyword arguments: defaults, then the cache's and ``OPTIONS``."""
        redis = import_redis()
        kwargs = dict(DEFAULTS)
        if self.scheme != "unix":
            kwargs.update(TCP_DEFAULTS)
        if self.scheme == "rediss":
            kwargs.update(TLS_DEFAULTS)
        if self.mode == "sentinel" and self.url:
            # The URL's host is the service the sentinels know; keep its credentials and db.
            parsed = redis.connection.parse_url(self.url)
            for name in ("host", "port", "connection_class"):
                parsed.pop(name, None)
            kwargs.update(parsed, ssl=self.scheme == "rediss")
        kwargs.update(self.options)
        if "credential_provider" not in kwargs and self.credential_provider is not None:
            kwargs["credential_provider"] = self.credential_provider_instance()
        self._cap_timeouts(kwargs)
        if "retry" not in kwargs:
            module = redis.asyncio if asynchronous else redis
            kwargs["retry"] = module.retry.Retry(redis.backoff.NoBackoff(), 0)
        return kwargs

    def _cap_timeouts(self, kwargs: dict[str, Any]) -> None:
        for name in ("socket_timeout", "socket_connect_timeout"):
            if name in kwargs:
                value = kwargs[name]
                kwargs[name] = self.timeout if value is None else min(value, self.timeout)

    def describe(self) -> str:
        """Where the store is, with no secret: host:port/db, a cluster or a Sentinel service."""
        if self.mode == "sentinel":
            sentinels = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel service {self.service_name} via {sentinels}"
        parts = urlsplit(self.url or "")
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        db = parts.path.strip("/") or "0"
        address = f"{parts.hostname}:{parts.port or 6379}"
        return f"cluster {address}" if self.mode == "cluster" else f"{address}/{db}"

    def credential_provider_instance(self) -> Any:
        """A provider per pool: a streaming provider (Entra ID) re-authenticates one pool."""
        provider = self.credential_provider
        if isinstance(provider, str):
            provider = import_string(provider)
        credentials = import_redis().credentials
        if isinstance(provider, credentials.CredentialProvider):
            return provider
        return provider()

    def sync_client(self) -> Any:
        redis = import_redis()
        kwargs = self.kwargs(asynchronous=False)
        if self.mode == "cluster":
            return redis.cluster.RedisCluster.from_url(self.url, **kwargs)
        if self.mode == "sentinel":
            sentinel = redis.sentinel.Sentinel(
                list(self.sentinels),
                sentinel_kwargs=self._sentinel_kwargs(asynchronous=False),
                **kwargs,
            )
            return sentinel.master_for(self.service_name)
        pool = redis.ConnectionPool.from_url(self.url, **kwargs)
        return redis.Redis(connection_pool=pool)

    def thread_client(self, shared: Any) -> Any:
        """A client for one thread, holding one connection of ``shared``'s pool, or ``shared``.

        It skips the pool's checkout and return on every command (about a quarter of a
        command's cost in redis-py). Not for Cluster (a pool per node), nor with a credential
        provider (a streaming provider re-authenticates only the last client registered).
        """
        if self.mode == "cluster" or self.kwargs_have_credentials:
            return shared
        return import_redis().Redis(
            connection_pool=shared.connection_pool, single_connection_client=True
        )

    @property
    def kwargs_have_credentials(self) -> bool:
        return self.credential_provider is not None or "credential_provider" in self.options

    def async_client(self) -> Any:
        redis = import_redis()
        kwargs = self.kwargs(asynchronous=True)
        if self.mode == "cluster":
            return redis.asyncio.cluster.RedisCluster.from_url(self.url, **kwargs)
        if self.mode == "sentinel":
            sentinel = redis.asyncio.sentinel.Sentinel(
                list(self.sentinels),
                sentinel_kwargs=self._sentinel_kwargs(asynchronous=True),
                **kwargs,
            )
            return sentinel.master_for(self.service_name)
        pool = redis.asyncio.ConnectionPool.from_url(self.url, **kwargs)
        return redis.asyncio.Redis.from_pool(pool)

    def _sentinel_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        redis = import_redis()
        kwargs = {**DEFAULTS, **TCP_DEFAULTS, **self.sentinel_options}
        self._cap_timeouts(kwargs)
        if "retry" not in kwargs:  # Sentinel asks each sentinel in turn: no retry inside that
            module = redis.asyncio if asynchronous else redis
            kwargs["retry"] = module.retry.Retry(redis.backoff.NoBackoff(), 0)
        return kwargs

    def validate(self) -> None:
        """Raise what redis-py would raise on the first connection (nothing is connected)."""
        redis = import_redis()
        kwargs = self.kwargs(asynchronous=False)
        kwargs.pop("credential_provider", None)
        if self.mode == "cluster":
            kwargs.pop("retry", None)
        if self.mode == "sentinel":
            redis.sentinel.SentinelConnectionPool(
                self.service_name, redis.sentinel.Sentinel([]), **kwargs
            ).make_connection()
            return
        pool = redis.ConnectionPool.from_url(self.url, **kwargs)
        pool.connection_class(**pool.connection_kwargs)


def backoff(failures: int) -> float:
    """Seconds to wait before retry number ``failures``: jittered, exponential, capped."""
    redis = import_redis()
    return float(
        redis.backoff.EqualJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE).compute(failures)
    )


def spec_from_settings(config: RedisSettings, timeout: float = 5.0) -> ConnectionSpec:
    """The connection described by ``AZURE_SESSIONS["REDIS"]``; ImproperlyConfigured if none.

    ``timeout`` is ``AZURE_SESSIONS["TIMEOUT"]``, the longest any single wait may be."""
    options: dict[str, Any] = {}
    url = config.URL
    sentinels = [(str(host), int(port)) for host, port in config.SENTINELS]
    service_name = config.SENTINEL_SERVICE_NAME
    sentinel_options = dict(config.SENTINEL_OPTIONS)
    if config.CACHE_ALIAS is not None:
        cache = cache_connection(config.CACHE_ALIAS)
        url = url or cache.url
        options.update(cache.options)
        if cache.sentinels and not sentinels:
            sentinels, service_name = list(cache.sentinels), cache.service_name
            sentinel_options = {**cache.sentinel_options, **sentinel_options}
    options.update(config.OPTIONS)
    if config.CLUSTER:
        mode: Mode = "cluster"
    elif sentinels:
        mode = "sentinel"
    else:
        mode = "standalone"
    if url is None and mode != "sentinel":
        raise ImproperlyConfigured(
            'AZURE_SESSIONS["REDIS"] needs a "URL", a "CACHE_ALIAS" or "SENTINELS".'
        )
    return ConnectionSpec(
        mode=mode,
        url=url,
        options=options,
        retries=config.RETRIES,
        sentinels=tuple(sentinels),
        service_name=service_name,
        sentinel_options=sentinel_options,
        credential_provider=config.CREDENTIAL_PROVIDER,
        timeout=timeout,
    )


def cache_connection(alias: str) -> ConnectionSpec:
    """The connection settings of the Redis cache ``CACHES[alias]`` (django-redis or Django's)."""
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ImproperlyConfigured(f"CACHE_ALIAS {alias!r} is not in CACHES.")
    cache = caches[alias]
    backend = cache.get("BACKEND")
    location = cache.get("LOCATION", "")
    servers = location.split(",") if isinstance(location, str) else list(location)
    if not servers or not servers[0].strip():
        raise ImproperlyConfigured(f"CACHES[{alias!r}] has no LOCATION.")
    url = servers[0].strip()  # the primary: django-redis and Django write to the first server
    cache_options = dict(cache.get("OPTIONS") or {})
    options: dict[str, Any] = {}
    if backend == DJANGO_REDIS:
        client_class = str(cache_options.get("CLIENT_CLASS", ""))
        if client_class.rpartition(".")[2] in _UNSHAREABLE_CLIENTS:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}] shards keys over several servers; sessions need one store."
            )
        for name, kwarg in _DJANGO_REDIS_OPTIONS.items():
            if cache_options.get(name):
                options[kwarg] = cache_options[name]
        options.update(cache_options.get("CONNECTION_POOL_KWARGS") or {})
        if cache_options.get("SENTINELS"):
            return ConnectionSpec(
                mode="sentinel",
                url=url,
                options=options,
                sentinels=tuple((str(h), int(p)) for h, p in cache_options["SENTINELS"]),
                service_name=urlsplit(url).hostname or "mymaster",
                sentinel_options=dict(cache_options.get("SENTINEL_KWARGS") or {}),
            )
    elif backend == DJANGO_BUILTIN_REDIS:
        options = {k: v for k, v in cache_options.items() if k not in _DJANGO_POOL_CHOICES}
    else:
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}] is {backend!r}, not a Redis cache "
            f"({DJANGO_REDIS} or {DJANGO_BUILTIN_REDIS})."
        )
    return ConnectionSpec(mode="standalone", url=url, options=options)


def insecure_tls(spec: ConnectionSpec) -> bool:
    """True when TLS is used without verifying the server's certificate and name."""
    if spec.scheme != "rediss":
        return False
    reqs = spec.options.get("ssl_cert_reqs", "required")
    unverified = reqs is None or reqs == ssl.CERT_NONE or str(reqs).lower() == "none"
    return unverified or spec.options.get("ssl_check_hostname", True) is False


AZURE_HOSTS = (".redis.cache.windows.net", ".redis.azure.net", ".redisenterprise.cache.azure.net")
AZURE_IDLE_TIMEOUT = 600
SECTION = "AZURE_SESSIONS['REDIS']"


def _error(number: int, msg: str, hint: str) -> CheckMessage:
    return Error(f"{SECTION}{msg}", hint=hint, id=f"django_azure_sessions.E{number:03d}")


def _warning(number: int, msg: str, hint: str) -> CheckMessage:
    return Warning(f"{SECTION}{msg}", hint=hint, id=f"django_azure_sessions.W{number:03d}")


def check_redis(section: dict[str, Any]) -> list[CheckMessage]:
    """The REDIS section's checks, run when the Redis engine is the SESSION_ENGINE."""
    try:
        import_redis()
    except ImportError:
        return [_error(32, " is used, but redis-py is not installed.", INSTALL_HINT)]
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
        number = 24 if section.get("CACHE_ALIAS") is not None else 21
        return [_error(number, f": {exc}", "See the README, 'Redis engine'.")]
    try:
        spec.validate()
    except (TypeError, ValueError, import_redis().RedisError) as exc:
        return [
            _error(
                25,
                f": redis-py rejects the connection options: {exc}",
                "OPTIONS (and a CACHE_ALIAS cache's options) are keyword arguments of "
                "redis-py's connection pool; check their names and values.",
            )
        ]
    return _check_azure(spec)


def _check_types(section: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    url, alias = section.get("URL"), section.get("CACHE_ALIAS")
    sentinels = section.get("SENTINELS", [])
    if url is None and alias is None and not sentinels:
        errors.append(
            _error(
                21,
                " needs a URL, a CACHE_ALIAS or SENTINELS.",
                _URL_HINT,
            )
        )
    if url is not None and alias is not None:
        errors.append(
            _error(21, " has both URL and CACHE_ALIAS.", "Keep the one that says where to go.")
        )
    if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in SCHEMES):
        errors.append(
            _error(22, "['URL'] must be a redis://, rediss:// or unix:// URL.", _URL_HINT)
        )
    elif url is not None:
        try:
            import_redis().connection.parse_url(url)
        except ValueError as exc:
            errors.append(_error(22, f"['URL'] is not a valid Redis URL: {exc}", _URL_HINT))
    if alias is not None and (
        not isinstance(alias, str) or alias not in getattr(settings, "CACHES", {})
    ):
        errors.append(
            _error(
                23,
                f"['CACHE_ALIAS'] is {alias!r}, not an alias in CACHES.",
                f"Use one of: {', '.join(map(repr, getattr(settings, 'CACHES', {})))}.",
            )
        )
    for name, number in (("OPTIONS", 25), ("SENTINEL_OPTIONS", 29)):
        value = section.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            errors.append(
                _error(
                    number,
                    f"['{name}'] must be a dict of keyword arguments.",
                    'For example {"socket_timeout": 2, "max_connections": 50}.',
                )
            )
    cluster = section.get("CLUSTER", False)
    if not isinstance(cluster, bool):
        errors.append(_error(26, "['CLUSTER'] must be True or False.", _CLUSTER_HINT))
    elif cluster and sentinels:
        errors.append(
            _error(26, " sets both CLUSTER and SENTINELS.", "A deployment is one or the other.")
        )
    elif cluster and isinstance(url, str) and url.startswith("unix:"):
        errors.append(_error(26, ": a Redis Cluster is not reached by a unix:// URL.", _URL_HINT))
    if not _address_list(sentinels):
        errors.append(
            _error(
                27,
                "['SENTINELS'] must be a list of (host, port) pairs.",
                'For example [("10.0.0.1", 26379), ("10.0.0.2", 26379)].',
            )
        )
    service = section.get("SENTINEL_SERVICE_NAME", "mymaster")
    if not isinstance(service, str) or not service:
        errors.append(
            _error(
                28,
                "['SENTINEL_SERVICE_NAME'] must be a non-empty string.",
                "The name the sentinels monitor (`sentinel monitor <name> ...`).",
            )
        )
    errors.extend(_check_credential_provider(section.get("CREDENTIAL_PROVIDER")))
    retries = section.get("RETRIES", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        errors.append(
            _error(
                31,
                "['RETRIES'] must be an integer from 0 to 10.",
                "The default, 3, rides out a failover's dropped connections in under a second "
                "of backoff.",
            )
        )
    return errors


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
    if value is None:
        return []
    hint = (
        "A redis-py CredentialProvider, a callable returning one, or the dotted path of "
        "either; for Entra ID: "
        '"django_azure_sessions.backends.redis.entra_id_credential_provider".'
    )
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            return [_error(30, f"['CREDENTIAL_PROVIDER'] cannot be imported: {exc}", hint)]
    if not (isinstance(value, import_redis().credentials.CredentialProvider) or callable(value)):
        return [_error(30, "['CREDENTIAL_PROVIDER'] is not a credential provider.", hint)]
    return []


def _check_azure(spec: ConnectionSpec) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if insecure_tls(spec):
        warnings.append(
            _warning(
                20,
                ": TLS is used without verifying the server's certificate and host name.",
                "Remove ssl_cert_reqs / ssl_check_hostname from the options; Azure's "
                "certificates verify with the system's CA bundle.",
            )
        )
    host = (urlsplit(spec.url).hostname or "") if spec.url else ""
    if spec.scheme == "redis" and host.endswith(AZURE_HOSTS):
        warnings.append(
            _warning(
                21,
                f": {host} is an Azure cache, reached here without TLS.",
                "Azure disables the non-TLS port by default: use rediss:// (port 6380 on "
                "Azure Cache for Redis, 10000 on Azure Managed Redis).",
            )
        )
    interval = spec.kwargs(asynchronous=False).get("health_check_interval", 0)
    if spec.mode != "cluster" and not 0 < interval < AZURE_IDLE_TIMEOUT:
        warnings.append(
            _warning(
                22,
                f": health_check_interval is {interval!r}.",
                "Azure closes connections idle for 10 minutes: keep it between 1 and 599 "
                "seconds (the default is 30) so that a dropped connection is noticed before use.",
            )
        )
    return warnings


def entra_id_credential_provider() -> Any:
    """Microsoft Entra ID for Azure Cache for Redis / Azure Managed Redis, via redis-entraid.

    Uses ``DefaultAzureCredential`` (managed identity, workload identity, environment, Azure
    CLI...); the token is the password, renewed in the background before it expires, and
    open connections re-authenticate with it. Requires ``django-azure-sessions[entraid]``.
    """
    from redis_entraid.cred_provider import create_from_default_azure_credential

    return create_from_default_azure_credential(("https://redis.azure.com/.default",))
