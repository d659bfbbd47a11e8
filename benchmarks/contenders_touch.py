"""Touch suites (``touch-sql``, ``touch-redis``, ``touch-table``): what activity tracking costs
one engine, request by request, the way the package's middleware uses a session.

Four shapes of request, each on sessions of its own, in one run:

- ``read``: load the session and read a key, nothing else (Django's middleware; today's read);
- ``read, tracked``: the same through the activity code, within ``ACTIVITY_INTERVAL`` (the
  device observed, the interval checked): it must cost what ``read`` costs;
- ``read, then touch``: the interval has passed, so the request writes the new expiry and the
  time only;
- ``read, then save``: the request changed the session and saves it all.

Targets: a tracked read within the interval costs at least 0.95 of a plain read's speed, and
a touch costs less than a save (a request that saves takes at least 1.2 times as long).

On Table, two more shapes show what azure-data-tables itself allows: ``get_entity`` then an
``update_entity`` of the ``Expires`` and ``Updated`` properties (a merge), against the same
then a replace of the whole entity with its encoded data: the floor of a touch and of a save.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import override_settings

from .harness import PAYLOAD, Contender, Target

READ = "read"
TRACKED = "read, tracked"
TOUCH = "read, then touch"
SAVE = "read, then save"
OPERATIONS = ("read",)  # each contender's read() is one request of its shape
TARGETS = [
    Target("read", TRACKED, READ, 0.95),
    Target("read", TOUCH, SAVE, 1.2),
]
BASELINE = READ
META = {
    "HTTP_USER_AGENT": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 "
    "Firefox/133.0",
    "REMOTE_ADDR": "203.0.113.9",
}


class Request:
    META = META


class RequestShape(Contender):
    """One shape of request on the engine's ``SessionStore``."""

    def __init__(self, name: str, store: type[Any], release: Any = None) -> None:
        self.name = name
        self.store = store
        self.counter = 0
        self.release = release

    def teardown(self) -> None:
        if self.release is not None:
            self.release()

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def create(self) -> Any:
        session = self.store()
        session.observe(Request)
        session.update(PAYLOAD)
        session.save()
        return session.session_key

    def read(self, handle: Any) -> None:
        session = self.store(handle)
        if self.name == READ:
            assert session["cart"]
            return
        session.observe(Request)
        assert session["cart"]
        if self.name == SAVE:
            self.counter += 1
            session["counter"] = self.counter
        elif self.name == TOUCH:
            session.mark_active()  # what the middleware does once the interval has passed
        elif session.activity_due():
            session.mark_active()
        if session.modified:
            session.save()

    def cycle(self, handle: Any, counter: int) -> None:
        self.read(handle)


def contenders(engine: str) -> list[Contender]:
    release: Any = None
    if engine == "sql":
        from django_azure_sessions.backends.sql import SessionStore as store

        section: dict[str, Any] = {"KEY_PREFIX": "bench-touch:"}
    elif engine == "redis":
        from django_azure_sessions.backends.redis import SessionStore as store

        from .contenders_redis import PREFIX, _delete

        section = {"KEY_PREFIX": PREFIX + "touch:", "REDIS": {"URL": settings.REDIS_URL}}

        def release() -> None:
            _delete(PREFIX + "touch:")

    else:
        from django_azure_sessions.backends.table import SessionStore as store

        from .contenders_table import ENDPOINT, TABLE_NAME, RawTableWrite

        section = {
            "KEY_PREFIX": "bench-touch:",
            "TABLE": {"CONNECTION_STRING": ENDPOINT.acquire(), "TABLE_NAME": TABLE_NAME},
        }
        release = ENDPOINT.release
    # Within the interval for the whole run: only the touch shape writes without a change.
    override_settings(
        AZURE_SESSIONS={
            **section,
            "TRACK": {"user_agent", "ip", "last_activity"},
            "ACTIVITY_INTERVAL": 86_400,
        }
    ).enable()
    shapes: list[Contender] = [RequestShape(name, store) for name in (READ, TRACKED, TOUCH)]
    if engine == "table":
        shapes += [
            RawTableWrite("raw SDK: get, then merge 2 properties", merge=True),
            RawTableWrite("raw SDK: get, then replace", merge=False),
        ]
    return [*shapes, RequestShape(SAVE, store, release)]  # released once, by the last
