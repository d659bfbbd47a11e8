"""Admin pages to browse, search, inspect and revoke the sessions of ``SESSION_ENGINE``.

They work the same on every engine of this package: they read and delete through the
engine's storage, never through its own tables or keys. The ``Session`` model (the SQL
engine's table) only gives them a place in the admin and their permissions: "view session"
to browse and inspect, "delete session" to revoke. The one exception is counting: a store
that is a database table (the SQL engine's) gives a queryset (``Storage.queryset()``) that
counts its sessions in one query, so on SQL the list page gives exact counts and a chart of
every live session; Redis and Table cannot count without reading everything, so there the
pages say "more" and chart the sessions they read.

A search (``?q=``) finds users by the user model's ``USERNAME_FIELD`` and ``EMAIL_FIELD``
(any case) or primary key, and lists their sessions through the per-user index every engine
keeps. Filters (signed in or anonymous, active in the last hour, day or week) read at most
``SCAN_PAGES`` pages of the store per request, and then offer the next ones.

A session is shown by its stored id (the SHA-256 of its key), never by its key: nobody can
take a session over from these pages. With ``HASH_KEYS`` off the stored id *is* the key, so
the pages then refuse to list or show sessions. Values that would let a viewer act as the
user (the password hash marker, a session-kept CSRF secret) are not shown.

Revoking goes through a confirmation page, like the admin's deletions. Each revoked session
is written to the admin's history (``LogEntry``: who revoked which stored id, of which user).
An admin who revokes their own session is signed out at once and sent to the login page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import CSRF_SESSION_KEY
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_http_methods, require_POST

from . import users
from .conf import app_settings
from .core import keys
from .core.activity import Device
from .core.session import StoreSession
from .core.storage import Record, Storage, utcnow
from .models import Session
from .signals import send_revoked
from .transfer import session_store

PAGE_SIZE = 100
#: Pages a filtered listing reads at most per request: it never scans the whole store.
SCAN_PAGES = 10
#: Users a search lists the sessions of, at most.
SEARCH_USERS = 20
HIDDEN_KEYS = frozenset({"_auth_user_hash", CSRF_SESSION_KEY})

HOUR, DAY, WEEK = (
    datetime.timedelta(hours=1),
    datetime.timedelta(days=1),
    datetime.timedelta(weeks=1),
)
STATUS = {"signed-in": "Signed in", "anonymous": "Anonymous"}
ACTIVE = {
    "hour": ("In the last hour", HOUR),
    "day": ("In the last day", DAY),
    "week": ("In the last week", WEEK),
}
#: The chart's buckets of last activity: (label, at least this long ago, less than this).
BUCKETS = (
    ("Last hour", None, HOUR),
    ("1 hour to 1 day", HOUR, DAY),
    ("1 day to 1 week", DAY, WEEK),
    ("Over a week", WEEK, None),
)
PARAMS = ("q", "user", "status", "active")


def _store() -> type[StoreSession] | None:
    """The engine's session class, if these pages can serve it (see ``_unsupported``)."""
    store = session_store(settings.SESSION_ENGINE)
    if not issubclass(store, StoreSession) or not app_settings.HASH_KEYS:
        return None
    return store


def _unsupported() -> str:
    if not issubclass(session_store(settings.SESSION_ENGINE), StoreSession):
        return (
            "SESSION_ENGINE is not an engine of django-azure-sessions: these pages list the "
            "sessions of its engines only."
        )
    return (
        'AZURE_SESSIONS["HASH_KEYS"] is off: the stored ids are the session keys themselves, '
        "which would let anyone who can see these pages take a session over. They show "
        "nothing until it is on."
    )


def as_json(value: Any) -> str:
    """``value`` as indented JSON, or its ``repr()`` if it is not JSON (a pickled object)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def ago(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """Like "5 minutes ago"; "just now" under a minute, "-" for no time."""
    if moment is None:
        return "-"
    if (now - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, now, depth=1)} ago"


def until(moment: datetime.datetime, now: datetime.datetime) -> str:
    """Like "in 13 days, 23 hours"."""
    if (moment - now).total_seconds() < 60:
        return "in less than a minute"
    return f"in {timeuntil(moment, now, depth=2)}"


def last_active(record: Record) -> datetime.datetime | None:
    return record.updated or record.created


@dataclasses.dataclass(frozen=True)
class Filters:
    """The list page's filters, from its query string (unknown values are no filter)."""

    status: str | None = None  # a key of STATUS
    active: str | None = None  # a key of ACTIVE

    @classmethod
    def of(cls, params: Mapping[str, str]) -> Filters:
        status, active = params.get("status"), params.get("active")
        return cls(status if status in STATUS else None, active if active in ACTIVE else None)

    def __bool__(self) -> bool:
        return bool(self.status or self.active)

    def keep(self, record: Record, now: datetime.datetime) -> bool:
        if self.status is not None and bool(record.user_id) != (self.status == "signed-in"):
            return False
        if self.active is not None:
            moment = last_active(record)
            return moment is not None and now - moment <= ACTIVE[self.active][1]
        return True

    def condition(self, now: datetime.datetime) -> Q:
        """The same filters, for the SQL engine's table."""
        condition = Q()
        signed_in = Q(user_id__isnull=False) & ~Q(user_id="")
        if self.status == "signed-in":
            condition &= signed_in
        elif self.status == "anonymous":
            condition &= ~signed_in
        if self.active is not None:
            condition &= Q(updated__gte=now - ACTIVE[self.active][1])
        return condition


@dataclasses.dataclass(frozen=True)
class Owner:
    """The user a session is signed in as: the user model's object when there is one."""

    user_id: str
    user: Any = None
    url: str | None = None  # the user's admin page

    @property
    def label(self) -> str:
        return f"user {self.user_id}" if self.user is None else str(self.user.get_username())


@dataclasses.dataclass(frozen=True)
class Row:
    """One session as the pages show it."""

    record: Record
    owner: Owner | None
    own: bool
    device: Device | None
    started: str  # the sign-in time, for a signed-in session
    last_active: str
    expires: str

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def last_activity(self) -> datetime.datetime | None:
        return last_active(self.record)


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: int
    y: int


@dataclasses.dataclass(frozen=True)
class Chart:
    """Sessions by last activity, drawn as server-side SVG."""

    bars: list[Bar]
    caption: str
    LABEL_WIDTH = 130
    BAR_WIDTH = 240
    ROW_HEIGHT = 24

    @classmethod
    def of(cls, counts: Sequence[int], caption: str) -> Chart:
        most = max(counts, default=0) or 1
        bars = [
            Bar(label, count, round(cls.BAR_WIDTH * count / most), i * cls.ROW_HEIGHT)
            for i, ((label, _, _), count) in enumerate(zip(BUCKETS, counts, strict=True))
        ]
        return cls(bars, caption)

    @property
    def width(self) -> int:
        return self.LABEL_WIDTH + self.BAR_WIDTH + 60

    @property
    def height(self) -> int:
        return self.ROW_HEIGHT * len(self.bars)


def _sessions(count: int, kind: str = "") -> str:
    """Like "1 session", "2 live sessions"."""
    return " ".join(filter(None, [str(count), kind, "session" if count == 1 else "sessions"]))


def _bucket_counts(records: Iterable[Record], now: datetime.datetime) -> list[int]:
    counts = [0] * len(BUCKETS)
    for record in records:
        moment = last_active(record)
        if moment is None:
            continue
        idle = now - moment
        for i, (_, low, high) in enumerate(BUCKETS):
            if (low is None or idle >= low) and (high is None or idle < high):
                counts[i] += 1
    return counts


def _counted(storage: Storage) -> Any:
    """The live sessions as a queryset where the store can count them cheaply (the SQL
    engine's table), else None."""
    sessions = storage.queryset()
    return None if sessions is None else sessions.filter(expires__gt=timezone.now())


def _valid_user_pk(value: str) -> Any:
    """``value`` as a primary key of the user model; ValidationError if it cannot be one."""
    if "\x00" in value:  # no database keeps it (and PostgreSQL refuses it in a query)
        raise ValidationError("NUL")
    return get_user_model()._meta.pk.clean(value, None)


def search_users(query: str) -> list[Any]:
    """The users whose username or e-mail address is ``query`` in any case, or whose
    primary key it is; at most ``SEARCH_USERS``."""
    model = get_user_model()
    if not query or "\x00" in query:
        return []
    condition = Q()
    for name in dict.fromkeys([model.USERNAME_FIELD, getattr(model, "EMAIL_FIELD", "email")]):
        try:
            model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        condition |= Q(**{f"{name}__iexact": query})
    with contextlib.suppress(ValidationError):
        condition |= Q(pk=_valid_user_pk(query))
    if not condition:
        return []
    return list(model._default_manager.filter(condition).order_by("pk")[:SEARCH_USERS])


def _users_by_id(ids: Iterable[str]) -> dict[str, Any]:
    """The users of the user model among the session user ids ``ids``, by those ids."""
    pks = []
    for user_id in set(ids):
        try:
            pks.append(_valid_user_pk(user_id))
        except ValidationError:
            continue
    if not pks:
        return {}
    found = get_user_model()._default_manager.filter(pk__in=pks)
    return {users.user_id(user): user for user in found}


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The sessions of ``SESSION_ENGINE``, whichever engine of this package it is."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        # A GET shows what would be revoked; only the confirmation's POST (with its CSRF
        # token) revokes.
        confirm = require_http_methods(["GET", "POST"])
        return [
            path("", view(self.list_view), name=f"{name}_changelist"),
            path("revoke-user/", view(confirm(self.revoke_user_view)), name=f"{name}_revoke_user"),
            path(
                "revoke-selected/",
                view(require_POST(self.revoke_selected_view)),
                name=f"{name}_revoke_selected",
            ),
            path("<str:key>/", view(self.detail_view), name=f"{name}_change"),
            path("<str:key>/revoke/", view(confirm(self.revoke_view)), name=f"{name}_delete"),
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "engine": settings.SESSION_ENGINE,
            "can_revoke": self.has_delete_permission(request),
            **extra,
        }

    def _storage(self, request: HttpRequest, *, revoke: bool = False) -> Storage | None:
        allowed = (
            self.has_delete_permission(request) if revoke else self.has_view_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        store = _store()
        return None if store is None else store.get_storage()

    @staticmethod
    def _own(request: HttpRequest) -> str | None:
        """The stored id of the admin's own session."""
        session = getattr(request, "session", None)
        return users.stored_id(session) if isinstance(session, StoreSession) else None

    def _user_url(self, user: Any) -> str | None:
        model = type(user)
        if not self.admin_site.is_registered(model):
            return None
        try:
            return reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                args=[quote(user.pk)],
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return None

    def _owner(self, user_id: str, user: Any = None) -> Owner:
        return Owner(user_id, user, None if user is None else self._user_url(user))

    def _rows(self, request: HttpRequest, records: Iterable[Record]) -> list[Row]:
        records = list(records)
        found = _users_by_id(r.user_id for r in records if r.user_id)
        own = self._own(request)
        now = utcnow()
        return [
            Row(
                record,
                self._owner(record.user_id, found.get(record.user_id)) if record.user_id else None,
                record.key == own,
                Device.of(record),
                ago(record.created, now),
                ago(last_active(record), now),
                until(record.expires, now),
            )
            for record in records
        ]

    def _scan(
        self, storage: Storage, cursor: str | None, filters: Filters
    ) -> tuple[list[Record], str | None]:
        """The records of one page from ``cursor``; with filters, of as many pages as it
        takes to fill one (``SCAN_PAGES`` at most). Returns them and the next cursor."""
        read: dict[str, Record] = {}  # by key: Redis's SCAN may return one twice
        now = utcnow()
        for _ in range(SCAN_PAGES if filters else 1):
            try:
                page = storage.page(cursor, limit=PAGE_SIZE)
            except ValueError:
                raise Http404("No such page of sessions.") from None
            read.update((record.key, record) for record in page.records)
            cursor = page.next_cursor
            if cursor is None or sum(filters.keep(r, now) for r in read.values()) >= PAGE_SIZE:
                break
        return list(read.values()), cursor

    def _query(self, request: HttpRequest, **changes: str | None) -> str:
        """The list page's query string with ``changes`` (None removes a parameter); the
        cursor is kept only when given."""
        params = {name: request.GET[name] for name in PARAMS if request.GET.get(name)}
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return f"?{urlencode(params)}" if params else "?"

    def _filter_choices(self, request: HttpRequest, filters: Filters) -> list[Any]:
        def choices(name: str, current: str | None, labels: dict[str, str]) -> list[Any]:
            options = [(None, "All"), *labels.items()]
            return [
                {
                    "display": label,
                    "selected": value == current,
                    "query_string": self._query(request, **{name: value}),
                }
                for value, label in options
            ]

        active = {name: label for name, (label, _) in ACTIVE.items()}
        return [
            ("user", choices("status", filters.status, STATUS)),
            ("last activity", choices("active", filters.active, active)),
        ]

    def list_view(self, request: HttpRequest) -> HttpResponse:
        storage = self._storage(request)
        template = "admin/django_azure_sessions/session_list.html"
        if storage is None:
            context = self._context(request, "Sessions", unsupported=_unsupported())
            return TemplateResponse(request, template, context)
        query = request.GET.get("q", "").strip()
        user_id = "" if query else request.GET.get("user", "").strip()
        cursor = request.GET.get("cursor") or None  # the engine's own, opaque here
        filters = Filters.of(request.GET)
        now = utcnow()
        found: list[Any] = []
        next_cursor = None
        if query:
            found = search_users(query)
            read = [r for u in found for r in storage.user_records(users.user_id(u))]
        elif user_id:
            read = [] if "\x00" in user_id else storage.user_records(user_id)
            found = list(_users_by_id([user_id]).values())
        else:
            read, next_cursor = self._scan(storage, cursor, filters)
        shown = [record for record in read if filters.keep(record, now)]
        counted = None if (query or user_id) else _counted(storage)
        total = matching = None
        if query or user_id:  # a user's sessions come whole from the index: their count
            shown.sort(key=lambda r: last_active(r) or r.expires, reverse=True)
            matching = len(shown)
            whose = "users found" if query else "user shown"
            chart = Chart.of(
                _bucket_counts(read, now), f"The {_sessions(len(read), 'live')} of the {whose}."
            )
        elif counted is not None:
            counts = counted.aggregate(
                total=Count("pk"),
                matching=Count("pk", filter=filters.condition(timezone.now()))
                if filters
                else Count("pk"),
                **{
                    f"b{i}": Count("pk", filter=self._bucket_condition(low, high))
                    for i, (_, low, high) in enumerate(BUCKETS)
                },
            )
            total, matching = counts["total"], counts["matching"]
            chart = Chart.of(
                [counts[f"b{i}"] for i in range(len(BUCKETS))],
                f"All {_sessions(total, 'live')}, counted by the database.",
            )
        else:
            chart = Chart.of(
                _bucket_counts(read, now),
                f"Only the {_sessions(len(read))} read for this page: the "
                f"{storage.engine.capitalize()} store cannot count its sessions without reading "
                "every one.",
            )
        owners = [self._owner(users.user_id(user), user) for user in found]
        if user_id and not owners:
            owners = [self._owner(user_id)]
        context = self._context(
            request,
            "Sessions",
            rows=self._rows(request, shown),
            records=shown,
            read=len(read),
            query=query,
            user_id=user_id,
            owners=[(o, sum(r.user_id == o.user_id for r in read)) for o in owners],
            all_sessions=self._query(request, q=None, user=None),
            filters=filters,
            filter_choices=self._filter_choices(request, filters),
            clear_filters=self._query(request, status=None, active=None),
            total=total,
            matching=matching,
            chart=chart,
            cursor=cursor,
            next_cursor=next_cursor,
            next_query=None if next_cursor is None else self._query(request, cursor=next_cursor),
        )
        return TemplateResponse(request, template, context)

    @staticmethod
    def _bucket_condition(low: datetime.timedelta | None, high: datetime.timedelta | None) -> Q:
        now = timezone.now()
        condition = Q()
        if low is not None:
            condition &= Q(updated__lte=now - low)
        if high is not None:
            condition &= Q(updated__gt=now - high)
        return condition

    def _record(self, storage: Storage | None, key: str) -> Record:
        if storage is None or not keys.is_storage_id(key):
            raise Http404("No such session.")
        record = storage.load(key)
        if record is None:
            raise Http404("No such session: it expired or was revoked.")
        return record

    def detail_view(self, request: HttpRequest, key: str) -> HttpResponse:
        storage = self._storage(request)
        record = self._record(storage, key)
        store = _store()
        assert store is not None
        data = store().decode(record.data)
        shown = sorted((k, as_json(v)) for k, v in data.items() if k not in HIDDEN_KEYS)
        (row,) = self._rows(request, [record])
        context = self._context(
            request,
            "Session",
            row=row,
            record=record,
            data=shown,
            size=len(record.data),
        )
        return TemplateResponse(
            request, "admin/django_azure_sessions/session_detail.html", context
        )

    def _changelist(self) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )

    def _log_revoked(
        self, request: HttpRequest, records: Sequence[Record], rows: Sequence[Row], how: str
    ) -> None:
        """Write the revocations to the admin's history, as the admin logs a deletion."""
        content_type = ContentType.objects.get_for_model(self.model)
        admin_user = request.user
        assert admin_user.is_authenticated  # admin_view lets only staff in
        entries = []
        for record, row in zip(records, rows, strict=True):
            if row.owner is None:
                owner = "no user"
            elif row.owner.user is None:
                owner = row.owner.label
            else:
                owner = f"{row.owner.label} (user {row.owner.user_id})"
            entries.append(
                LogEntry(
                    user_id=admin_user.pk,
                    content_type=content_type,
                    object_id=record.key,
                    object_repr=f"Session {record.key[:12]}… of {owner}"[:200],
                    action_flag=DELETION,
                    change_message=how,
                )
            )
        LogEntry.objects.bulk_create(entries)

    def _confirm(
        self,
        request: HttpRequest,
        rows: list[Row],
        question: str,
        fields: list[tuple[str, str]],
        action: str,
        cancel: str,
    ) -> HttpResponse:
        context = self._context(
            request,
            "Are you sure?",
            rows=rows,
            question=question,
            fields=fields,
            action=action,
            cancel=cancel,
            own_included=any(row.own for row in rows),
        )
        return TemplateResponse(
            request, "admin/django_azure_sessions/revoke_confirmation.html", context
        )

    def _revoke(
        self, request: HttpRequest, storage: Storage, records: list[Record], how: str
    ) -> list[Row]:
        """Delete ``records``, send ``session_revoked`` per user, log each one."""
        rows = self._rows(request, records)
        by_user: dict[str | None, list[str]] = {}
        for record in records:
            storage.delete(record.key)
            by_user.setdefault(record.user_id, []).append(record.key)
        for owner, stored_ids in by_user.items():
            send_revoked(storage, owner, stored_ids, "admin")
        self._log_revoked(request, records, rows, how)
        return rows

    def _revoked(self, request: HttpRequest, rows: list[Row], message: str) -> HttpResponse:
        """Where a revocation ends: the list with ``message``; or, when the admin's own
        session was among those revoked, the login page (with no message: the admin is
        signed out, and a message would be kept for whoever signs in next)."""
        if any(row.own for row in rows):
            request.session.flush()
            login = reverse("admin:login", current_app=self.admin_site.name)
            return HttpResponseRedirect(f"{login}?{urlencode({'next': self._changelist()})}")
        messages.success(request, message)
        return HttpResponseRedirect(self._changelist())

    def revoke_view(self, request: HttpRequest, key: str) -> HttpResponse:
        storage = self._storage(request, revoke=True)
        record = self._record(storage, key)
        assert storage is not None
        if request.method != "POST":
            (row,) = self._rows(request, [record])
            whose = "an anonymous visitor" if row.owner is None else row.owner.label
            return self._confirm(
                request,
                [row],
                f"Are you sure you want to revoke this session of {whose}? It is signed out "
                "at once.",
                [],
                request.path,
                reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                    args=[key],
                    current_app=self.admin_site.name,
                ),
            )
        rows = self._revoke(request, storage, [record], "Revoked.")
        return self._revoked(
            request, rows, "The session was revoked: its user is signed out of it."
        )

    def revoke_user_view(self, request: HttpRequest) -> HttpResponse:
        storage = self._storage(request, revoke=True)
        params = request.POST if request.method == "POST" else request.GET
        user_id = params.get("user", "")
        if storage is None or not user_id or "\x00" in user_id:
            raise Http404("No such user's sessions.")
        owner = self._owner(user_id, _users_by_id([user_id]).get(user_id))
        records = storage.user_records(user_id)
        if request.method != "POST":
            if not records:
                messages.info(request, f"{owner.label} has no live sessions.")
                return HttpResponseRedirect(self._changelist())
            return self._confirm(
                request,
                self._rows(request, records),
                f"Are you sure you want to revoke every session of {owner.label}? They are "
                "signed out everywhere, at once.",
                [("user", user_id)],
                request.path,
                f"{self._changelist()}?{urlencode({'user': user_id})}",
            )
        rows = self._revoke(request, storage, records, "Revoked with every session of its user.")
        return self._revoked(
            request,
            rows,
            f"{_sessions(len(rows))} of {owner.label} revoked: signed out everywhere.",
        )

    def revoke_selected_view(self, request: HttpRequest) -> HttpResponse:
        storage = self._storage(request, revoke=True)
        if storage is None:
            raise Http404("No sessions here.")
        chosen = dict.fromkeys(
            key for key in request.POST.getlist("_selected_action") if keys.is_storage_id(key)
        )
        records = [record for key in chosen if (record := storage.load(key)) is not None]
        if not records:
            messages.warning(request, "No live session was selected: nothing was revoked.")
            return HttpResponseRedirect(self._changelist())
        if request.POST.get("post") != "yes":
            return self._confirm(
                request,
                self._rows(request, records),
                f"Are you sure you want to revoke the {_sessions(len(records), 'selected')}? "
                "Their users are signed out of them at once.",
                [("_selected_action", record.key) for record in records],
                request.path,
                self._changelist(),
            )
        rows = self._revoke(request, storage, records, "Revoked with the selected sessions.")
        return self._revoked(
            request,
            rows,
            f"{_sessions(len(rows))} revoked: their users are signed out of them.",
        )
