"""Django's ``SessionBase`` contract, implemented once over a ``Storage``.

Engines subclass ``StoreSession`` and set ``storage_class``; everything about keys,
encoding, expiry and concurrent writers lives here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core import signing
from django.utils.module_loading import import_string

from ..conf import SettingsCache, app_settings
from ..exceptions import SessionStoreUnavailable
from ..signals import asend_revoked, send_revoked
from . import activity, codec, keys
from .steps import Call, Steps, adrive, drive
from .storage import Record, Storage, utcnow

# django.contrib.auth.SESSION_KEY, named here so that auth need not be installed.
USER_ID_KEY = "_auth_user_id"
CREATE_ATTEMPTS = 10

security_logger = logging.getLogger("django.security.SuspiciousSession")
logger = logging.getLogger("django_azure_sessions")

# The serializer class, imported once until the setting changes.
_serializer: SettingsCache[None, Any] = SettingsCache(
    frozenset({"SESSION_SERIALIZER"}), lambda _: import_string(settings.SESSION_SERIALIZER)
)


class SessionConflict(UpdateError):
    """Other requests kept changing this session; the save gave up after bounded retries."""


class StoreSession(SessionBase):
    """A ``SessionBase`` whose records are kept by ``storage_class``.

    When the store is unavailable (``SessionStoreUnavailable``), loading sets ``unavailable``:
    with ``AZURE_SESSIONS["ON_UNAVAILABLE"] = "raise"`` (the default) the error goes on to
    Django, and the package's middleware answers 503; with ``"degrade"`` the request gets an
    empty session. Either way this object then writes nothing and keeps its key, so the
    stored session is neither overwritten nor deleted, and the cookie stays as it was.
    """

    storage_class: ClassVar[type[Storage]]
    #: True once the store failed this request: the session writes nothing from then on.
    unavailable = False
    #: The failure, for the middleware's 503.
    store_error: SessionStoreUnavailable | None = None
    #: The request's ``META`` (``observe()``), from which the device is recorded.
    _meta: Mapping[str, Any] | None = None
    #: True when the next save only records activity (a touch), the data being unchanged.
    _touch_only = False

    def __init__(self, session_key: str | None = None) -> None:
        # SessionBase.__init__ (the same in Django 4.2 to 6.1), but with the serializer class
        # imported once rather than once per request; tests/test_contract.py compares the two.
        self._session_key = session_key
        self.accessed = False
        self.modified = False
        self.serializer = _serializer.get(None)
        self._record: Record | None = None  # as loaded or last saved by this object
        self._stored_as: tuple[str, str] | None = None  # (session key, its storage id)

    @classmethod
    def get_storage(cls) -> Storage:
        return cls.storage_class.get()

    # Keys

    _validate_session_key = staticmethod(keys.is_valid)

    def _get_new_session_key(self) -> str:
        # Keys are 165 random bits and creation is insert-if-absent: no exists() probe.
        return keys.new_key()

    async def _aget_new_session_key(self) -> str:
        return keys.new_key()

    # Data

    def decode(self, session_data: str | bytes) -> dict[str, Any]:
        try:
            return codec.decode(session_data, self.key_salt, self.serializer)
        except signing.BadSignature:
            security_logger.warning("Session data corrupted")
        except Exception as exc:  # the serializer's own errors, as in Django: no session
            logger.warning("Session data could not be deserialized: %s", type(exc).__name__)
        return {}

    def _get_session(self, no_load: bool = False) -> dict[str, Any]:
        # Django's, without its AttributeError on every first access (a visible cost).
        self.accessed = True
        cache: dict[str, Any] | None = self.__dict__.get("_session_cache")
        if cache is None:
            load = self.session_key is not None and not no_load
            cache = self._session_cache = self.load() if load else {}
        return cache

    _session = property(_get_session)

    def get_session_cookie_age(self) -> int:
        return settings.SESSION_COOKIE_AGE

    def _expires(self, data: dict[str, Any], now: datetime.datetime) -> datetime.datetime:
        expiry = data.get("_session_expiry")
        age = self.get_expiry_age(expiry=expiry) if expiry else self.get_session_cookie_age()
        return now + datetime.timedelta(seconds=age)

    def _record_for(self, data: dict[str, Any]) -> Record:
        now = utcnow()
        user_id = data.get(USER_ID_KEY)
        return Record(
            key=self._storage_id(),
            data=codec.encode(data, self.key_salt, self.serializer),
            expires=self._expires(data, now),
            user_id=None if user_id is None else str(user_id),
            created=now,  # kept by an update: only a new record takes it
            updated=now,
            device=self._device(),
        )

    # Activity (see core.activity)

    def observe(self, request: Any) -> None:
        """Record the device and activity of ``request`` with this session's next save (the
        package's middleware calls this for every request)."""
        self._meta = request.META

    def _device(self) -> str | None:
        """The device text to store: the observed request's, else what is stored already."""
        if self._meta is not None:
            return self._observed_device
        return None if self._record is None else self._record.device

    @functools.cached_property
    def _observed_device(self) -> str | None:
        """The observed request's device, worked out once however often the request saves."""
        assert self._meta is not None
        device = activity.observed_device(self._meta)
        return None if device is None else device.encode()

    def activity_due(self) -> bool:
        """Whether this request should write the session's activity though nothing changed:
        it loaded a stored session, activity is tracked, and ``ACTIVITY_INTERVAL`` has passed
        since the last write. Then ``mark_active()`` makes the next save do it."""
        record = self._record
        if record is None or record.updated is None or self.unavailable or self.modified:
            return False
        if "last_activity" not in app_settings.TRACK:
            return False
        elapsed = (utcnow() - record.updated).total_seconds()
        return elapsed >= app_settings.ACTIVITY_INTERVAL

    def mark_active(self) -> None:
        """Make the next save write the activity: only the expiry and the time (a touch), or
        the whole record when the device changed (a new browser version, another network)."""
        self.modified = True
        self._touch_only = self._record is not None and self._device() == self._record.device

    def _touch_steps(self, data: dict[str, Any]) -> Steps[Call, None]:
        loaded = self._record
        assert loaded is not None
        now = utcnow()
        touched = dataclasses.replace(loaded, expires=self._expires(data, now), updated=now)
        version = yield Call("touch", (touched, loaded))
        if version is not None:  # else a newer save wrote the activity, or the session is gone
            touched.version = version
            self._record = touched

    def _ending(self, record: Record) -> str | None:
        """Why ``record``, just loaded, is over by the timeouts; None if it is not."""
        configured = app_settings.raw  # one read of the settings on every load
        if configured.get("IDLE_TIMEOUT") is None and configured.get("ABSOLUTE_TIMEOUT") is None:
            return None
        return activity.ended(record, utcnow())

    def _end_steps(self, record: Record, reason: str) -> Steps[Call, None]:
        """Delete a session that timed out, and say so (``session_revoked``)."""
        yield Call("delete", (record.key,))
        yield Call("revoked", (record.user_id, [record.key], reason))

    def _storage_id(self) -> str:
        """The stored id of this session's key, computed once per key."""
        key = self._session_key
        assert key is not None
        if self._stored_as is None or self._stored_as[0] != key:
            self._stored_as = (key, keys.storage_id(key))
        return self._stored_as[1]

    def _loaded(self, record: Record | None) -> dict[str, Any]:
        if record is None or record.expires <= utcnow():
            self._record = None
            self._session_key = None
            return {}
        self._record = record
        return self.decode(record.data)

    def _load_steps(self) -> Steps[Call, dict[str, Any]]:
        record = yield Call("load", (self._storage_id(),))
        if record is not None:
            reason = self._ending(record)
            if reason is not None:
                yield from self._end_steps(record, reason)
                record = None
        return self._loaded(record)

    @staticmethod
    def _present(record: Record | None) -> Record:
        """The record a save updates; gone means deleted meanwhile (Django's UpdateError)."""
        if record is None:
            raise UpdateError
        return record

    def _rebase(self, current: Record, data: dict[str, Any], attempt: int) -> Record:
        """Re-apply this object's changes on the stored ``current`` record after a conflict."""
        if attempt >= app_settings.CONFLICT_RETRIES:
            logger.warning(
                "Session %s… still changing after %d retries: the save gave up",
                current.key[:12],
                attempt,
            )
            raise SessionConflict(f"Session still changing after {attempt} retries")
        logger.debug(
            "Session %s… changed meanwhile: merging this request's changes (retry %d)",
            current.key[:12],
            attempt + 1,
        )
        base = self.decode(self._record.data) if self._record is not None else {}
        merged = self.decode(current.data)
        for key in base.keys() - data.keys():
            merged.pop(key, None)
        merged.update((k, v) for k, v in data.items() if k not in base or base[k] != v)
        self._session_cache = merged
        return self._record_for(merged)

    @staticmethod
    def _backoff(attempt: int, took: float) -> float:
        """A random wait before retry ``attempt``, on the scale of the store's round trips.

        ``took`` is how long the failed reload and save took: concurrent writers spread out
        by multiples of it, whether the store answers in 0.2 ms (Redis) or 20 ms (Table).
        """
        return random.uniform(0, min(1.0, max(0.002, took) * 2**attempt))

    # The operations, written once: each yields the storage calls it needs (see core.steps)

    def _create_steps(self) -> Steps[Call, None]:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = keys.new_key()
            try:
                yield from self._save_steps(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError(f"No free session key after {CREATE_ATTEMPTS} attempts")

    def _save_steps(self, must_create: bool) -> Steps[Call, None]:
        if self.session_key is None:
            return (yield from self._create_steps())
        self.accessed = True
        data: dict[str, Any] | None = self.__dict__.get("_session_cache")
        if data is None:
            data = self._session_cache = {} if must_create else (yield from self._load_steps())
        if self._session_key is None:  # loading found no session: this is a new one
            return (yield from self._create_steps())
        if self._touch_only:
            self._touch_only = False
            if self._record is not None:
                return (yield from self._touch_steps(data))
        record = self._record_for(data)
        if must_create:
            version = yield Call("create", (record,))
            if version is None:
                raise CreateError
        else:
            if self._record is None:  # data replaced without reading (clear()): replace it
                self._record = self._present((yield Call("load", (record.key,))))
            version = yield Call("update", (record, self._record))
            attempt = 0
            while version is None:
                started = time.monotonic()
                current = self._present((yield Call("load", (record.key,))))
                record = self._rebase(current, data, attempt)
                version = yield Call("update", (record, current))
                attempt += 1
                if version is None:
                    yield Call("sleep", (self._backoff(attempt, time.monotonic() - started),))
        record.version = version  # a record this call built: nobody else holds it
        self._record = record

    def _delete_steps(self, session_key: str | None) -> Steps[Call, None]:
        if session_key is None:
            session_key = self.session_key
        if session_key is not None and keys.is_valid(session_key):
            yield Call("delete", (keys.storage_id(session_key),))

    # Sync API

    def _failed(self, exc: SessionStoreUnavailable) -> dict[str, Any]:
        """What an operation that met an unavailable store gives, by ``ON_UNAVAILABLE``."""
        self.unavailable = True
        self.store_error = exc
        self.__dict__.setdefault("_session_cache", {})
        if app_settings.ON_UNAVAILABLE != "degrade":
            raise exc
        return {}

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        return self._run(self._load_steps())  # type: ignore[no-any-return]

    def exists(self, session_key: str) -> bool:
        return keys.is_valid(session_key) and (
            self.get_storage().load(keys.storage_id(session_key)) is not None
        )

    def create(self) -> None:
        if not self.unavailable:
            self._run(self._create_steps())

    def save(self, must_create: bool = False) -> None:
        if not self.unavailable:
            self._run(self._save_steps(must_create))

    def delete(self, session_key: str | None = None) -> None:
        if not self.unavailable:
            self._run(self._delete_steps(session_key))

    def _run(self, steps: Steps[Call, Any]) -> Any:
        """Carry out ``steps`` on the storage; an unavailable store goes to ``_failed()``."""
        storage = self.get_storage()

        def perform(call: Call) -> Any:
            if call.method == "sleep":
                return time.sleep(*call.args)
            if call.method == "revoked":
                return send_revoked(storage, *call.args)
            return getattr(storage, call.method)(*call.args)

        try:
            return drive(steps, perform)
        except SessionStoreUnavailable as exc:
            return self._failed(exc)

    @classmethod
    def clear_expired(cls) -> None:
        cls.get_storage().clear_expired()

    # Async API (native on Django >= 5.1; harmless extra methods before)

    async def _aget_session(self, no_load: bool = False) -> dict[str, Any]:
        # _get_session's twin; Django's own (5.1 and later) is replaced for the same reason,
        # and Django 4.2, which has none, gets one for asave().
        self.accessed = True
        cache: dict[str, Any] | None = self.__dict__.get("_session_cache")
        if cache is None:
            load = self.session_key is not None and not no_load
            cache = self._session_cache = await self.aload() if load else {}
        return cache

    async def aload(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        return await self._arun(self._load_steps())  # type: ignore[no-any-return]

    async def aexists(self, session_key: str) -> bool:
        return keys.is_valid(session_key) and (
            await self.get_storage().aload(keys.storage_id(session_key)) is not None
        )

    async def acreate(self) -> None:
        if not self.unavailable:
            await self._arun(self._create_steps())

    async def asave(self, must_create: bool = False) -> None:
        if not self.unavailable:
            await self._arun(self._save_steps(must_create))

    async def adelete(self, session_key: str | None = None) -> None:
        if not self.unavailable:
            await self._arun(self._delete_steps(session_key))

    async def _arun(self, steps: Steps[Call, Any]) -> Any:
        storage = self.get_storage()

        async def perform(call: Call) -> Any:
            if call.method == "sleep":
                return await asyncio.sleep(*call.args)
            if call.method == "revoked":
                return await asend_revoked(storage, *call.args)
            return await getattr(storage, "a" + call.method)(*call.args)

        try:
            return await adrive(steps, perform)
        except SessionStoreUnavailable as exc:
            return self._failed(exc)

    @classmethod
    async def aclear_expired(cls) -> None:
        await cls.get_storage().aclear_expired()
