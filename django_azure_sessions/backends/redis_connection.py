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
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import RedisSettings

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


def entra_id_credential_provider() -> Any:
    """Microsoft Entra ID for Azure Cache for Redis / Azure Managed Redis, via redis-entraid.

    Uses ``DefaultAzureCredential`` (managed identity, workload identity, environment, Azure
    CLI...); the token is the password, renewed in the background before it expires, and
    open connections re-authenticate with it. Requires ``django-azure-sessions[entraid]``.
    """
    from redis_entraid.cred_provider import create_from_default_azure_credential

    return create_from_default_azure_credential(("https://redis.azure.com/.default",))
