"""Redis suite: this package's Redis engine, its peers, and raw redis-py as the floor.

All on the same Redis server (``REDIS_URL``), each under its own key prefix, removed at the
end: Django's cache engine over a django-redis cache, django-redis-sessions, a raw ``GET`` +
``SET`` of an already-encoded payload, and the same with the payload decoded and encoded by
this package's codec (the least that an engine keeping sessions signed and deflated pays).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheStore
from django.test import override_settings

from django_azure_sessions.backends.redis import SessionStore as RedisStore
from django_azure_sessions.core import codec, keys

from .contenders_sql import SessionStoreContender, codec_serializer
from .harness import PAYLOAD, Contender, Target

BASELINE = "django-azure-sessions redis"
DJANGO_CACHE = "django cache (django-redis)"
REDIS_SESSIONS = "django-redis-sessions"
RAW = "raw redis-py"
RAW_CODEC = "raw redis-py + codec"
# On loopback most of a Redis command's wall time is the round trip, which no client can
# shorten (a raw socket GET of the payload takes 60-70 us on the reference machine, where
# Django's cache engine reads a session in about 90): the wall-time targets are bounded by it.
# The client CPU targets measure what the engine itself costs.
TARGETS = [
    Target("cycle", BASELINE, DJANGO_CACHE, 1.3),
    Target("cycle", BASELINE, REDIS_SESSIONS, 1.3),
    Target("read", BASELINE, DJANGO_CACHE, 1.0),
    Target("create", BASELINE, DJANGO_CACHE, 1.3),
    Target("create", BASELINE, REDIS_SESSIONS, 1.3),
    Target("cycle", BASELINE, RAW, 1 / 1.4),
    Target("cycle", BASELINE, DJANGO_CACHE, 1.6, "cpu"),
    Target("cycle", BASELINE, REDIS_SESSIONS, 1.6, "cpu"),
    Target("read", BASELINE, DJANGO_CACHE, 1.5, "cpu"),
    Target("cycle", BASELINE, RAW, 1 / 1.3, "cpu"),
]
PREFIX = "bench-redis:"
TTL = 14 * 24 * 3600


class Cleaned(SessionStoreContender):
    """A session store whose keys, all under ``prefix``, are deleted at teardown."""

    def __init__(self, name: str, store: Any, prefix: str) -> None:
        super().__init__(name, store)
        self.prefix = prefix

    def teardown(self) -> None:
        _delete(self.prefix)


class RawRedis(Contender):
    """The floor: GET, then SET with a TTL, of an already-encoded payload."""

    name = RAW

    def setup(self) -> None:
        import redis

        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.payload = codec.encode(PAYLOAD, "benchmark", codec_serializer())
        self.prefix = PREFIX + "raw:"

    def teardown(self) -> None:
        _delete(self.prefix)
        self.client.close()

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def read(self, handle: Any) -> None:
        assert self.client.get(handle)

    def cycle(self, handle: Any, counter: int) -> None:
        assert self.client.get(handle)
        self.client.set(handle, self.payload, ex=TTL)

    def create(self) -> Any:
        key = self.prefix + keys.new_key()
        self.client.set(key, self.payload, ex=TTL, nx=True)
        return key


class RawRedisCodec(RawRedis):
    """The floor of an engine that keeps sessions signed and deflated: the floor's GET and
    SET, plus this package's codec (decode after the GET, encode before the SET) and nothing
    else: no header, no version check, no session object. What the engine costs beyond it is
    the engine's own; what it costs beyond the floor, any such engine pays."""

    name = RAW_CODEC

    def setup(self) -> None:
        super().setup()
        self.serializer = codec_serializer()
        self.prefix = PREFIX + "raw-codec:"

    def read(self, handle: Any) -> None:
        assert codec.decode(self.client.get(handle), "benchmark", self.serializer)["cart"]

    def cycle(self, handle: Any, counter: int) -> None:
        data = codec.decode(self.client.get(handle), "benchmark", self.serializer)
        data["counter"] = counter
        self.client.set(handle, codec.encode(data, "benchmark", self.serializer), ex=TTL)


def _delete(prefix: str) -> None:
    import redis

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        for batch in _chunks(client.scan_iter(match=prefix + "*", count=1000)):
            client.delete(*batch)


def _chunks(items: Any, size: int = 1000) -> Any:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def contenders() -> list[Contender]:
    # Settings for the whole run (the process ends with it): each store under its own prefix.
    override_settings(
        AZURE_SESSIONS={"KEY_PREFIX": PREFIX + "das:", "REDIS": {"URL": settings.REDIS_URL}},
        CACHES={
            **settings.CACHES,
            "sessions": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": settings.REDIS_URL,
                "KEY_PREFIX": PREFIX + "cache",
            },
        },
        SESSION_CACHE_ALIAS="sessions",
    ).enable()
    import redis_sessions.session
    from redis_sessions import settings as redis_sessions_settings

    # django-redis-sessions reads its settings once, at import: point it at the same server.
    redis_sessions_settings.SESSION_REDIS_URL = settings.REDIS_URL
    redis_sessions_settings.SESSION_REDIS_PREFIX = PREFIX + "rs"
    redis_sessions_settings.SESSION_REDIS_SOCKET_TIMEOUT = 5
    return [
        Cleaned(BASELINE, RedisStore, PREFIX + "das:"),
        Cleaned(DJANGO_CACHE, DjangoCacheStore, PREFIX + "cache"),
        Cleaned(REDIS_SESSIONS, redis_sessions.session.SessionStore, PREFIX + "rs"),
        RawRedis(),
        RawRedisCodec(),
    ]
