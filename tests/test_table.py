"""The Table engine against a real Azurite: credentials, request counts, the indexes, limits,
failures. The session contract itself (sync and async) is in ``test_contract.py``."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import http.server
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from azure.core.credentials import AccessToken, AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.data.tables import (
    AccountSasPermissions,
    ResourceTypes,
    UpdateMode,
    generate_account_sas,
)
from django.contrib.sessions.backends.base import UpdateError
from django.core import checks
from django.test import Client, override_settings

from django_azure_sessions import SessionStoreUnavailable
from django_azure_sessions.backends import table
from django_azure_sessions.backends.table import (
    BUCKET_SECONDS,
    CHUNK,
    TableStorage,
    TableStorageError,
    bucket_end,
)
from django_azure_sessions.backends.table_checks import check_table
from django_azure_sessions.backends.table_client import (
    Call,
    Connection,
    Runner,
    connection_from_settings,
    environment_options,
    redact,
)
from django_azure_sessions.conf import TableSettings, app_settings
from django_azure_sessions.core import keys
from django_azure_sessions.core.session import USER_ID_KEY
from django_azure_sessions.core.steps import drive
from django_azure_sessions.core.storage import Record, SessionTooLarge, Sweep, utcnow

from .fixtures.engines import configured
from .fixtures.table import ACCOUNT_KEY, ACCOUNT_NAME, TABLE_NAME, Azurite, table_settings
from .fixtures.tls import self_signed_certificate

table_store = contextlib.contextmanager(configured)


def call(is_async: bool, obj: Any, name: str, *args: Any) -> Any:
    """``obj.name(*args)``, or its async twin run in a fresh event loop."""
    if is_async:
        method = getattr(obj, "a" + name, None)
        if method is None:
            pytest.skip(f"Django {django.get_version()} has no async SessionBase.a{name}()")
        return async_to_sync(method)(*args)
    if name == "set":
        obj[args[0]] = args[1]
        return None
    return getattr(obj, name)(*args)


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def is_async(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def round_trip(engine: type[Any], is_async: bool) -> None:
    """Create, load, update and delete a session."""
    session = engine()
    call(is_async, session, "set", "a", 1)
    call(is_async, session, "save")
    key = session.session_key
    loaded = engine(key)
    assert call(is_async, loaded, "get", "a") == 1
    call(is_async, loaded, "set", "b", 2)
    call(is_async, loaded, "save")
    assert dict(call(is_async, engine(key), "items")) == {"a": 1, "b": 2}
    call(is_async, loaded, "delete")
    assert call(is_async, engine(key), "get", "a") is None


def storage_of(engine: type[Any]) -> TableStorage:
    storage = engine.get_storage()
    assert isinstance(storage, TableStorage)
    return storage


def raw_rows(storage: TableStorage, partition: str) -> list[str]:
    client = storage.raw_client()
    query = client.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
    return sorted(entity["RowKey"] for entity in query)


def index_rows(storage: TableStorage, key: str) -> list[str]:
    return [
        row
        for row in raw_rows(storage, storage._partition(key))
        if row.startswith("x.") and row.endswith("." + key)
    ]


class RequestLog:
    """An azure-core ``raw_request_hook``: the method and path of every HTTP request sent."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: Any) -> None:
        http = request.http_request
        path = http.url.split("?")[0].split("/", 4)[-1]
        self.requests.append(f"{http.method} {path}")
        self.headers.append(dict(http.headers))

    def take(self) -> list[str]:
        taken, self.requests = self.requests, []
        return taken


# Credentials, in the documented order. Each form makes a full round trip, sync and async.


def account_sas(**permissions: bool) -> str:
    return generate_account_sas(
        AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY),
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, delete=True, list=True, add=True, update=True
        ),
        expiry=utcnow() + datetime.timedelta(hours=1),
    )


CREDENTIAL_FORMS: dict[str, Callable[[Azurite], dict[str, Any]]] = {
    "connection-string-key": lambda az: {"CONNECTION_STRING": az.connection_string},
    "connection-string-sas": lambda az: {
        "CONNECTION_STRING": (
            f"TableEndpoint={az.account_url};SharedAccessSignature={account_sas()}"
        )
    },
    "account-key-dict": lambda az: {
        "ACCOUNT_URL": az.account_url,
        "CREDENTIAL": {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    },
    "account-key-credential": lambda az: {
        "ACCOUNT_URL": az.account_url,
        "CREDENTIAL": AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY),
    },
    "sas-string": lambda az: {"ACCOUNT_URL": az.account_url, "CREDENTIAL": account_sas()},
    "sas-string-with-question-mark": lambda az: {
        "ACCOUNT_URL": az.account_url,
        "CREDENTIAL": "?" + account_sas(),
    },
    "sas-credential": lambda az: {
        "ACCOUNT_URL": az.account_url,
        "CREDENTIAL": AzureSasCredential(account_sas()),
    },
    "sas-in-account-url": lambda az: {"ACCOUNT_URL": f"{az.account_url}?{account_sas()}"},
    # Precedence: the connection string wins over ACCOUNT_URL/CREDENTIAL (which here point
    # nowhere); CREDENTIAL wins over a (here broken) SAS token in ACCOUNT_URL.
    "connection-string-wins": lambda az: {
        "CONNECTION_STRING": az.connection_string,
        "ACCOUNT_URL": "http://127.0.0.1:9/nowhere",
        "CREDENTIAL": "sv=2019-02-02&sig=wrong",
    },
    "credential-wins-over-url-sas": lambda az: {
        "ACCOUNT_URL": f"{az.account_url}?sv=2019-02-02&ss=t&srt=sco&sp=r&se=2000-01-01&sig=bad",
        "CREDENTIAL": {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    },
}


@pytest.mark.parametrize("form", CREDENTIAL_FORMS)
def test_credential_forms(azurite: Azurite, is_async: bool, form: str) -> None:
    section = {"TABLE_NAME": TABLE_NAME, **CREDENTIAL_FORMS[form](azurite)}
    with table_store("table", {"TABLE": section}) as engine:
        assert checks_of(section, errors_only=True) == []
        round_trip(engine, is_async)


def test_a_wrong_key_is_an_error_not_an_empty_session(azurite: Azurite) -> None:
    wrong = base64.b64encode(b"not the key" * 4).decode()
    section = {
        "ACCOUNT_URL": azurite.account_url,
        "CREDENTIAL": {"account_name": ACCOUNT_NAME, "account_key": wrong},
    }
    with (
        table_store("table", {"TABLE": section}) as engine,
        pytest.raises(TableStorageError, match="AuthorizationFailure") as info,
    ):
        engine(keys.new_key()).load()
    assert wrong not in str(info.value)


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    """A second Azurite, over HTTPS, checking bearer tokens (``--oauth basic``)."""
    workdir = tmp_path_factory.mktemp("azurite-oauth")
    cert, key = self_signed_certificate(workdir)
    server = Azurite(
        workdir,
        scheme="https",
        extra_args=("--oauth", "basic", "--cert", str(cert), "--key", str(key)),
    )
    server.start()
    yield server, cert
    server.stop()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class FakeEntraCredential:
    """A FAKE token credential, standing in for azure-identity's DefaultAzureCredential.

    Microsoft Entra ID cannot be reached from the test machine, so this mints an unsigned JWT
    with the claims that Azurite's ``--oauth basic`` mode checks (audience, issuer, lifetime).
    What is tested for real: how the engine builds its clients from a token credential, that
    the SDK asks it for a Storage-scoped token, sends it as a bearer token over HTTPS, and that
    Azurite accepts it (and refuses a token for another audience).
    """

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []
        self.issued: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "aud": self.audience,
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-000000000001",
        }
        self.issued.append(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.")
        return AccessToken(self.issued[-1], now + 3600)


def test_token_credential(azurite_oauth: tuple[Azurite, Path], is_async: bool) -> None:
    server, cert = azurite_oauth
    credential = FakeEntraCredential()
    log = RequestLog()
    section = {
        "ACCOUNT_URL": server.account_url,
        "CREDENTIAL": credential,
        "OPTIONS": {"connection_verify": str(cert), "raw_request_hook": log},
    }
    with table_store("table", {"TABLE": section}) as engine:
        assert checks_of(section, errors_only=True) == []
        round_trip(engine, is_async)
    assert credential.scopes
    assert all(scopes == ("https://storage.azure.com/.default",) for scopes in credential.scopes)
    assert log.headers
    bearers = {f"Bearer {token}" for token in credential.issued}
    assert all(headers["Authorization"] in bearers for headers in log.headers)


def test_token_for_another_audience_is_refused(azurite_oauth: tuple[Azurite, Path]) -> None:
    server, cert = azurite_oauth
    section = {
        "ACCOUNT_URL": server.account_url,
        "CREDENTIAL": FakeEntraCredential(audience="https://vault.azure.net"),
        "OPTIONS": {"connection_verify": str(cert)},
    }
    with (
        table_store("table", {"TABLE": section}) as engine,
        pytest.raises(TableStorageError, match="AuthenticationFailed"),
    ):
        engine(keys.new_key()).load()


def test_async_clients_use_a_sync_token_credential_in_a_thread() -> None:
    from django_azure_sessions.backends.table_client import AsyncTokenCredential

    credential = FakeEntraCredential()
    connection = Connection("https://x", "t", account_url="https://x", credential=credential)
    wrapped = connection._credential(is_async=True)
    assert isinstance(wrapped, AsyncTokenCredential)
    token = async_to_sync(wrapped.get_token)("https://storage.azure.com/.default")
    assert token.token == credential.issued[-1]
    assert connection._credential(is_async=False) is credential


# Requests: one to load, one to save.


def test_one_request_to_load_and_one_to_save(azurite: Azurite, is_async: bool) -> None:
    log = RequestLog()
    settings = table_settings(azurite, OPTIONS={"raw_request_hook": log})
    with table_store("table", {"TABLE": settings}) as engine:
        warm = engine()
        call(is_async, warm, "save")  # the table exists from here on
        log.take()

        # Expiry in the middle of an hour, so that it stays in its hour from save to save.
        middle = bucket_end(utcnow()) + 24 * BUCKET_SECONDS + BUCKET_SECONDS // 2
        session = engine()
        call(is_async, session, "set_expiry", _at(middle))
        call(is_async, session, "set", "a", 1)
        call(is_async, session, "save")
        assert log.take() == ["POST $batch"]  # the session and its expiry entry, atomically
        key = session.session_key

        loaded = engine(key)
        assert call(is_async, loaded, "get", "a") == 1
        assert len(log.take()) == 1
        call(is_async, loaded, "set", "b", 2)
        call(is_async, loaded, "save")
        assert [request.split(" ")[0] for request in log.take()] == ["PUT"]
        assert call(is_async, engine(), "exists", key) is True
        assert len(log.take()) == 1

        # A new hour of expiry: the expiry entry moves in the same single request.
        call(is_async, loaded, "set_expiry", _at(middle + 3 * BUCKET_SECONDS))
        call(is_async, loaded, "save")
        assert log.take() == ["POST $batch"]

        # The user index is written when the user changes, and only then.
        call(is_async, loaded, "set", USER_ID_KEY, "7")
        call(is_async, loaded, "save")
        assert len(log.take()) == 2
        call(is_async, loaded, "set", "c", 3)
        call(is_async, loaded, "save")
        assert len(log.take()) == 1


def _at(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


# Size: data split over 64 KiB properties, refused above the entity limit


def incompressible(size: int) -> str:
    """``size`` characters of base64 text over random bytes: zlib cannot shrink it much."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()[:size]


def test_500_kb_session_round_trip(table_engine: type[Any], is_async: bool) -> None:
    blob = incompressible(500_000)
    session = table_engine()
    call(is_async, session, "set", "blob", blob)
    call(is_async, session, "save")
    key = session.session_key
    record = storage_of(table_engine).load(keys.storage_id(key))
    assert record is not None
    assert len(record.data) > 5 * CHUNK
    loaded = table_engine(key)
    assert call(is_async, loaded, "get", "blob") == blob
    call(is_async, loaded, "set", "blob", blob[:1000])  # shrinks: the extra properties go
    call(is_async, loaded, "save")
    assert call(is_async, table_engine(key), "get", "blob") == blob[:1000]
    entity = (
        storage_of(table_engine)
        .raw_client()
        .get_entity(
            storage_of(table_engine)._partition(keys.storage_id(key)), "s." + keys.storage_id(key)
        )
    )
    assert [name for name in entity if name.startswith("Data")] == ["Data"]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_data_sizes_around_the_property_limit(table_engine: type[Any], size: int) -> None:
    storage = storage_of(table_engine)
    data = os.urandom(size)
    record = Record(keys.storage_id(keys.new_key()), data, utcnow() + datetime.timedelta(hours=1))
    assert storage.create(record) is not None
    loaded = storage.load(record.key)
    assert loaded is not None
    assert loaded.data == data


def test_too_large_session_is_refused_and_nothing_is_written(
    table_engine: type[Any], is_async: bool
) -> None:
    blob = incompressible(1_500_000)
    session = table_engine()
    call(is_async, session, "set", "blob", blob)
    with pytest.raises(SessionTooLarge, match=r"at most 1,048,576 bytes \(1 MiB\)"):
        call(is_async, session, "save")
    assert storage_of(table_engine).load(keys.storage_id(session.session_key)) is None

    existing = table_engine()
    call(is_async, existing, "set", "small", 1)
    call(is_async, existing, "save")
    key = existing.session_key
    other = table_engine(key)
    call(is_async, other, "set", "blob", blob)
    with pytest.raises(SessionTooLarge):
        call(is_async, other, "save")
    assert dict(table_engine(key).items()) == {"small": 1}


def test_the_largest_session_that_fits(table_engine: type[Any]) -> None:
    storage = storage_of(table_engine)
    key = keys.storage_id(keys.new_key())
    expires = utcnow() + datetime.timedelta(hours=1)
    low, high = 500_000, table.MAX_ENTITY
    while low < high:  # the largest data the size check lets through
        middle = (low + high + 1) // 2
        try:
            storage._entity(Record(key, bytes(middle), expires), expires)
            low = middle
        except SessionTooLarge:
            high = middle - 1
    record = Record(keys.storage_id(keys.new_key()), os.urandom(low), expires)
    assert storage.create(record) is not None  # Azurite, like Azure, takes it
    with pytest.raises(SessionTooLarge):
        storage.create(Record(keys.storage_id(keys.new_key()), bytes(low + 1), expires))


# The expiry index


def test_one_expiry_entry_per_session_moving_with_the_hour(table_engine: type[Any]) -> None:
    storage = storage_of(table_engine)
    middle = bucket_end(utcnow()) + 24 * BUCKET_SECONDS + BUCKET_SECONDS // 2
    session = table_engine()
    session.set_expiry(_at(middle))
    session["a"] = 1
    session.save()
    key = keys.storage_id(session.session_key)
    first = index_rows(storage, key)
    assert len(first) == 1
    session["a"] = 2
    session.save()  # same hour of expiry: the entry stays
    assert index_rows(storage, key) == first
    session.set_expiry(_at(middle + 5 * BUCKET_SECONDS))
    session.save()
    moved = index_rows(storage, key)
    assert len(moved) == 1
    assert moved != first
    record = storage.load(key)
    assert record is not None
    assert moved == [f"x.{bucket_end(record.expires):011d}.{key}"]
    session.delete()
    assert index_rows(storage, key) == []


def _expired_session(engine: type[Any], ago: datetime.timedelta, **data: Any) -> str:
    session = engine()
    for name, value in data.items():
        session[name] = value
    session.set_expiry(utcnow() - ago)
    session.save()
    return keys.storage_id(session.session_key)


def test_clear_expired_reads_no_session_of_a_past_hour(azurite: Azurite) -> None:
    log = RequestLog()
    with table_store(
        "table", {"TABLE": table_settings(azurite, OPTIONS={"raw_request_hook": log})}
    ) as engine:
        storage = storage_of(engine)
        old = [_expired_session(engine, datetime.timedelta(hours=3), n=n) for n in range(5)]
        live = [_expired_session(engine, -datetime.timedelta(hours=3), n=n) for n in range(5)]
        log.take()
        assert storage.clear_expired() == 5
        sent = log.take()
        assert not any(
            request.startswith("GET") and "(PartitionKey" in request for request in sent
        )
        assert all(storage.load(key) is not None for key in live)
        assert all(
            raw_rows(storage, storage._partition(key)).count("s." + key) == 0 for key in old
        )
        assert all(index_rows(storage, key) == [] for key in old)


def test_clear_expired_this_hour_checks_the_session(
    table_engine: type[Any], is_async: bool
) -> None:
    storage = storage_of(table_engine)
    hour_end = datetime.datetime.fromtimestamp(bucket_end(utcnow()), datetime.timezone.utc)
    if hour_end - utcnow() < datetime.timedelta(seconds=5):
        time.sleep(6)  # the whole test within one hour of expiry
        hour_end += datetime.timedelta(seconds=BUCKET_SECONDS)
    gone = _expired_session(table_engine, datetime.timedelta(seconds=0))
    extended = table_engine()
    extended.set_expiry(1)
    extended.save()
    time.sleep(1.1)  # both expiry entries say "expired"; one session is saved again,
    extended.set_expiry(hour_end - datetime.timedelta(seconds=1))  # its entry unmoved
    extended["more"] = 1
    extended.save()
    removed = call(is_async, storage, "clear_expired")
    assert removed >= 1
    assert raw_rows(storage, storage._partition(gone)).count("s." + gone) == 0
    assert storage.load(keys.storage_id(extended.session_key)) is not None
    assert len(index_rows(storage, keys.storage_id(extended.session_key))) == 1


def test_cleanup_racing_a_save_keeps_the_session(table_engine: type[Any]) -> None:
    """Cleanup read the expiry entry; a save then moved it: the removal is refused whole."""
    storage = storage_of(table_engine)
    session = table_engine()
    session["a"] = 1
    session.set_expiry(utcnow() - datetime.timedelta(hours=2))
    session.save()
    key = keys.storage_id(session.session_key)
    partition = storage._partition(key)
    removals = [
        r for r in storage.runner.run(storage._removals(partition, utcnow())) if r.key == key
    ]
    assert len(removals) == 1
    session.set_expiry(3600)
    session.save()  # a request that had loaded it before it expired
    assert storage.runner.run(storage._remove(removals)) == []
    assert storage.load(key) is not None
    assert len(index_rows(storage, key)) == 1


def _bulk_sessions(storage: TableStorage, count: int, expires: datetime.datetime) -> list[str]:
    """Write ``count`` sessions with their expiry entries, 50 to a transaction."""
    created = utcnow()
    by_partition: dict[str, list[Any]] = {}
    made = []
    for _ in range(count):
        key = hashlib.sha256(os.urandom(16)).hexdigest()
        record = Record(key, os.urandom(200), expires, updated=created)
        ops = [
            ("upsert", storage._entity(record, created)),
            ("upsert", storage._index_entity(record)),
        ]
        by_partition.setdefault(storage._partition(key), []).extend(ops)
        made.append(key)
    batches = [ops[i : i + 100] for ops in by_partition.values() for i in range(0, len(ops), 100)]
    client = storage.raw_client()

    def submit(batch: list[Any]) -> None:
        # Upserts, so safe to send again when Azurite closes an idle pooled connection just
        # as it is reused (which azure-core does not retry for a POST).
        for attempt in range(3):
            try:
                client.submit_transaction(batch)
                return
            except (ServiceRequestError, ServiceResponseError):
                if attempt == 2:
                    raise

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(submit, batches))
    return made


def _listed_keys(storage: TableStorage, limit: int = 1000) -> list[str]:
    """Every key ``page()`` lists, page after page, in the order it lists them."""
    found: list[str] = []
    cursor = None
    while True:
        page = storage.page(cursor, limit=limit)
        found.extend(record.key for record in page.records)
        cursor = page.next_cursor
        if cursor is None:
            return found


def _live_keys(storage: TableStorage) -> set[str]:
    return set(_listed_keys(storage))


def _fresh_storage(azurite: Azurite, table_name: str) -> TableStorage:
    section = TableSettings(**table_settings(azurite, TABLE_NAME=table_name))
    storage = TableStorage(connection_from_settings(section), "", True, True)
    with contextlib.suppress(ResourceExistsError):
        storage.raw_client().create_table()
    return storage


@pytest.mark.slow
def test_clear_expired_cost_grows_with_expired_sessions_not_the_table(azurite: Azurite) -> None:
    expired = 2_000
    live = {"small": 2_000, "large": 20_000}
    # A table each, so that the size of one does not weigh on the timing of the other.
    stores = {name: _fresh_storage(azurite, f"scale{name}") for name in live}
    survivors = {
        name: set(_bulk_sessions(stores[name], count, utcnow() + datetime.timedelta(days=1)))
        for name, count in live.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in live}
    for _ in range(2):
        for name, storage in stores.items():
            _bulk_sessions(storage, expired, utcnow() - datetime.timedelta(hours=2))
            started = time.perf_counter()
            assert storage.clear_expired() == expired
            timings[name].append(time.perf_counter() - started)
    for name, storage in stores.items():
        assert _live_keys(storage) == survivors[name]
        storage.close()
    small, large = min(timings["small"]), min(timings["large"])
    print(
        f"clear_expired of {expired:,} expired sessions: {small:.2f}s beside {live['small']:,} "
        f"live, {large:.2f}s beside {live['large']:,} live (ratio {large / small:.2f})"
    )
    assert large / small <= 1.5


class _StopAfter(Sweep):
    """A sweep that runs out of time once ``limit`` sessions are removed."""

    def __init__(self, limit: int) -> None:
        self.seen: list[int] = []
        super().__init__(progress=self.seen.append)
        self.limit = limit

    def stopped(self) -> bool:
        return self.count >= self.limit


def test_a_stopped_cleanup_leaves_a_store_the_next_run_finishes(
    azurite: Azurite, is_async: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "BATCH", 2)  # a session a transaction: many batches
    storage = _fresh_storage(azurite, f"sweep{'async' if is_async else 'sync'}")
    if not is_async:  # the sync path in threads, as where no event loop of its own may run
        monkeypatch.setattr(storage.runner, "may_run_a_loop", lambda: False)
    ago = utcnow() - datetime.timedelta(hours=2)
    live = set(_bulk_sessions(storage, 20, utcnow() + datetime.timedelta(days=1)))
    live |= {_stored(storage, "ann").key for _ in range(3)}
    expired = set(_bulk_sessions(storage, 60, ago))
    expired |= {_stored(storage, f"u{n}", expires=ago).key for n in range(10)}
    assert call(is_async, storage, "count_expired") == 70
    assert _live_keys(storage) == live  # counting removes nothing

    sweep = _StopAfter(12)
    first = call(is_async, storage, "clear_expired", sweep)
    assert 12 <= first < 70
    assert sweep.count == first == sweep.seen[-1]
    assert sweep.seen == sorted(sweep.seen)
    assert call(is_async, storage, "count_expired") == 70 - first
    assert call(is_async, storage, "clear_expired", Sweep()) == 70 - first
    assert call(is_async, storage, "count_expired") == 0
    assert _live_keys(storage) == live
    # Sessions, expiry and user entries (of the first run's removals: by the repair) all gone.
    rows = {entity["RowKey"].rsplit(".", 1)[-1] for entity in storage.raw_client().list_entities()}
    assert rows == live
    storage.close()


# The per-user index


def test_user_index_follows_sign_in_and_out(table_engine: type[Any], is_async: bool) -> None:
    storage = storage_of(table_engine)
    user = f"user-{keys.new_key()[:6]}"
    session = table_engine()
    call(is_async, session, "set", USER_ID_KEY, user)
    call(is_async, session, "save")
    partition = storage._user_partition(user)
    key = keys.storage_id(session.session_key)
    assert raw_rows(storage, partition) == [key]
    assert [r.key for r in call(is_async, storage, "user_records", user)] == [key]

    call(is_async, session, "cycle_key")  # as on sign-in: a new key, the old one removed
    new_key = keys.storage_id(session.session_key)
    assert raw_rows(storage, partition) == [new_key]

    call(is_async, session, "set", USER_ID_KEY, "someone-else")
    call(is_async, session, "save")
    assert raw_rows(storage, partition) == []
    assert raw_rows(storage, storage._user_partition("someone-else")) == [new_key]

    call(is_async, session, "flush")  # sign-out
    assert raw_rows(storage, storage._user_partition("someone-else")) == []


def test_user_records_skip_and_drop_stale_entries(
    table_engine: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_of(table_engine)
    user = f"user-{keys.new_key()[:6]}"
    live = table_engine()
    live[USER_ID_KEY] = user
    live.save()
    mine = keys.storage_id(live.session_key)
    gone = keys.storage_id(keys.new_key())
    storage.raw_client().upsert_entity(storage._user_entity(user, gone))
    assert [r.key for r in storage.user_records(user)] == [mine]
    assert raw_rows(storage, storage._user_partition(user)) == [mine]

    # An entry whose session has another user: a sign-in under way, or one that failed.
    other = table_engine()
    other[USER_ID_KEY] = "someone-else"
    other.save()
    theirs = keys.storage_id(other.session_key)
    storage.raw_client().upsert_entity(storage._user_entity(user, theirs))
    assert [r.key for r in storage.user_records(user)] == [mine]
    assert raw_rows(storage, storage._user_partition(user)) == sorted([mine, theirs])
    monkeypatch.setattr(table, "STALE_USER_ENTRY", -60)  # as if it were old
    assert [r.key for r in storage.user_records(user)] == [mine]
    assert raw_rows(storage, storage._user_partition(user)) == [mine]


def test_clear_expired_removes_user_entries(table_engine: type[Any]) -> None:
    storage = storage_of(table_engine)
    user = f"user/{keys.new_key()[:6]} #?"  # characters a PartitionKey may not hold
    key = _expired_session(table_engine, datetime.timedelta(hours=2), **{USER_ID_KEY: user})
    assert raw_rows(storage, storage._user_partition(user)) == [key]
    assert storage.clear_expired() >= 1
    assert raw_rows(storage, storage._user_partition(user)) == []


def _stored(storage: TableStorage, user_id: str | None = None, **fields: Any) -> Record:
    """A record created in ``storage`` (an hour ahead unless ``expires`` says otherwise), as
    a later write names it: with its version."""
    now = utcnow()
    record = Record(
        keys.storage_id(keys.new_key()),
        b"data",
        now + datetime.timedelta(hours=1),
        user_id=user_id,
        updated=now,
        device="ua",
    )
    record = dataclasses.replace(record, **fields)
    record.version = storage.create(record)
    assert record.version is not None
    return record


@pytest.mark.parametrize("reads", ["one by one", "by range"])
def test_user_records_and_clear_expired_repair_the_user_index(
    table_engine: type[Any], is_async: bool, monkeypatch: pytest.MonkeyPatch, reads: str
) -> None:
    """User entries whose session was deleted outside the package go: those of the user
    listed when listed, everyone's when cleaning up."""
    if reads == "by range":  # every partition read by range, two sessions a request
        monkeypatch.setattr(table, "RANGE_READ", 0)
        monkeypatch.setattr(table, "PAGE", 2)
    storage = storage_of(table_engine)
    client = storage.raw_client()
    alice, bob = (f"{name}-{keys.new_key()[:6]}" for name in ("alice", "bob"))
    # All in one partition, with anonymous sessions between them: a range is read in pages.
    in_one_partition = lambda: "00" + os.urandom(31).hex()  # noqa: E731
    mine = {
        user: sorted(_stored(storage, user, key=in_one_partition()).key for _ in range(3))
        for user in (alice, bob)
    }
    for _ in range(3):
        _stored(storage, key=in_one_partition())
    for key in mine[alice][:2] + mine[bob][:2]:
        client.delete_entity(storage._partition(key), "s." + key)  # its expiry entry stays
    assert [r.key for r in call(is_async, storage, "user_records", alice)] == mine[alice][2:]
    assert raw_rows(storage, storage._user_partition(alice)) == mine[alice][2:]
    assert raw_rows(storage, storage._user_partition(bob)) == mine[bob]  # not read yet

    # Cleaning up checks every user's entries: Bob's too, and entries that name no session
    # id, or another user's session (once old: a sign-in writes the entry first).
    client.upsert_entity(storage._user_entity(bob, "not-a-session-id"))
    client.upsert_entity(storage._user_entity(bob, mine[alice][2]))
    assert call(is_async, storage, "clear_expired") == 0  # nothing had expired
    bobs = storage._user_partition(bob)
    assert raw_rows(storage, bobs) == sorted([mine[bob][2], mine[alice][2]])
    monkeypatch.setattr(table, "STALE_USER_ENTRY", -60)  # as if it were old
    call(is_async, storage, "clear_expired")
    assert raw_rows(storage, bobs) == mine[bob][2:]
    assert raw_rows(storage, storage._user_partition(alice)) == mine[alice][2:]
    assert [r.key for r in storage.user_records(bob)] == mine[bob][2:]


def test_an_expired_session_no_index_finds_leaves_its_user_entry_to_the_repair(
    table_engine: type[Any], is_async: bool
) -> None:
    storage = storage_of(table_engine)
    user = f"user-{keys.new_key()[:6]}"
    record = _stored(storage, user, expires=utcnow() - datetime.timedelta(hours=2))
    for row in index_rows(storage, record.key):  # lost: the expiry pass cannot see it
        storage.raw_client().delete_entity(storage._partition(record.key), row)
    assert call(is_async, storage, "clear_expired") == 0
    assert raw_rows(storage, storage._user_partition(user)) == []


def test_the_repair_survives_a_dropped_connection(
    azurite: Azurite, proxy: ForwardProxy, is_async: bool
) -> None:
    """Its removals go out again (conditional deletes: applied twice, the transaction finds
    its first entry gone, so all of them, as a transaction is atomic), and cleaning up goes
    on."""
    with table_store("table", {"TABLE": table_settings(azurite)}) as engine:
        storage = storage_of(engine)
        for failure in ("drop_posts", "lose_posts"):
            user = f"user-{keys.new_key()[:6]}"
            made = sorted(_stored(storage, user).key for _ in range(3))
            for key in made[:2]:
                storage.raw_client().delete_entity(storage._partition(key), "s." + key)
            proxy.seen.clear()
            setattr(proxy, failure, 1)
            assert call(is_async, storage, "clear_expired") == 0
            assert getattr(proxy, failure) == 0
            assert _posts(proxy) == ["POST /devstoreaccount1/$batch"] * 2
            assert raw_rows(storage, storage._user_partition(user)) == made[2:]


# Touch: the expiry and the last activity alone


def test_a_touch_is_one_conditional_merge(azurite: Azurite, is_async: bool) -> None:
    log = RequestLog()
    settings = table_settings(azurite, OPTIONS={"raw_request_hook": log})
    with table_store("table", {"TABLE": settings}) as engine:
        storage = storage_of(engine)
        middle = bucket_end(utcnow()) + 24 * BUCKET_SECONDS + BUCKET_SECONDS // 2
        record = _stored(storage, "5", expires=_at(middle))
        loaded = storage.load(record.key)
        assert loaded is not None
        log.take()
        touch = Record(record.key, b"", _at(middle + 60), updated=utcnow())
        version = call(is_async, storage, "touch", touch, loaded)
        assert log.take() == [
            f"PATCH {TABLE_NAME}(PartitionKey='{storage._partition(record.key)}',"
            f"RowKey='s.{record.key}')"
        ]
        assert log.headers[-1]["If-Match"] == loaded.version.etag
        after = storage.load(record.key)
        assert after is not None
        assert version == after.version
        assert (after.expires, after.updated) == (touch.expires, touch.updated)
        assert len(index_rows(storage, record.key)) == 1


def test_a_touch_into_another_hour_moves_the_expiry_entry(
    table_engine: type[Any], is_async: bool
) -> None:
    """A session created with an expiry in a past hour (cleanup would delete it without
    reading it) slides into the future: the entry moves with it, and cleanup keeps it; slid
    back into the past, cleanup removes it, and its user entry."""
    storage = storage_of(table_engine)
    user = f"user-{keys.new_key()[:6]}"
    loaded = _stored(storage, user, expires=utcnow() - datetime.timedelta(hours=2))
    key = loaded.key
    later = Record(key, b"", utcnow() + datetime.timedelta(hours=3), updated=utcnow())
    version = call(is_async, storage, "touch", later, loaded)
    assert version is not None
    assert index_rows(storage, key) == [f"x.{bucket_end(later.expires):011d}.{key}"]
    assert call(is_async, storage, "clear_expired") == 0
    assert storage.load(key) is not None
    assert raw_rows(storage, storage._user_partition(user)) == [key]

    slid = dataclasses.replace(loaded, expires=later.expires, version=version)
    past = Record(key, b"", utcnow() - datetime.timedelta(hours=2), updated=utcnow())
    assert call(is_async, storage, "touch", past, slid) is not None
    assert index_rows(storage, key) == [f"x.{bucket_end(past.expires):011d}.{key}"]
    assert call(is_async, storage, "clear_expired") == 1
    assert "s." + key not in raw_rows(storage, storage._partition(key))
    assert index_rows(storage, key) == []
    assert raw_rows(storage, storage._user_partition(user)) == []


def test_a_touch_into_another_hour_never_writes_over_a_newer_save(
    table_engine: type[Any], is_async: bool
) -> None:
    storage = storage_of(table_engine)
    loaded = _stored(storage, "5")
    newer = dataclasses.replace(loaded, data=b"newer", updated=utcnow())
    assert storage.update(newer, loaded) is not None
    later = Record(loaded.key, b"", utcnow() + datetime.timedelta(hours=5), updated=utcnow())
    assert call(is_async, storage, "touch", later, loaded) is None
    assert index_rows(storage, loaded.key) == [f"x.{bucket_end(loaded.expires):011d}.{loaded.key}"]
    storage.delete(loaded.key)
    assert call(is_async, storage, "touch", later, loaded) is None
    assert raw_rows(storage, storage._partition(loaded.key)) == []


def test_an_entity_without_updated_reads_its_timestamp(table_engine: type[Any]) -> None:
    """As entities written before Updated was stored have it."""
    storage = storage_of(table_engine)
    key = _stored(storage).key
    client = storage.raw_client()
    entity = dict(client.get_entity(storage._partition(key), "s." + key))
    del entity["Updated"], entity["Device"]
    client.upsert_entity(entity, mode=UpdateMode.REPLACE)
    stamp = client.get_entity(storage._partition(key), "s." + key).metadata["timestamp"]
    loaded = storage.load(key)
    assert loaded is not None
    assert loaded.device is None
    assert abs(loaded.updated - stamp) < datetime.timedelta(milliseconds=1)


# Failures: a clear error, never an empty session; recovery without restarting the process


def test_azurite_stopped_mid_request(tmp_path: Path) -> None:
    server = Azurite(tmp_path / "azurite", in_memory=False)  # on disk: it survives a restart
    server.start()
    options = {"read_timeout": 2, "retry_total": 1, "retry_backoff_factor": 0.1}
    try:
        with table_store("table", {"TABLE": table_settings(server, OPTIONS=options)}) as engine:
            session = engine()
            session[USER_ID_KEY] = "42"
            session["cart"] = [1, 2]
            session.save()
            key = session.session_key
            assert server.process is not None

            # Azurite freezes while a load is in flight: the request times out.
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                frozen = engine(key)
                with pytest.raises(SessionStoreUnavailable) as info:
                    frozen.get("cart")
                assert frozen.session_key == key  # not logged out
                assert server.account_url in str(info.value)
                assert ACCOUNT_KEY not in str(info.value)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)

            # Loaded, then Azurite stops before the save: the save fails, nothing is lost.
            request = engine(key)
            assert request["cart"] == [1, 2]
            request["cart"] = []
            server.stop()
            with pytest.raises(SessionStoreUnavailable, match="ServiceRequestError"):
                request.save()
            assert request.session_key == key

            # Through the middleware: a 503, and the cookie is left alone.
            client = Client(raise_request_exception=False)
            client.cookies["sessionid"] = key
            response = client.get("/get/")
            assert response.status_code == 503
            assert "sessionid" not in response.cookies

            # Azurite is back: the same process carries on, with the session as it was.
            server.start()
            again = engine(key)
            assert again[USER_ID_KEY] == "42"
            assert again["cart"] == [1, 2]
            again["cart"] = [3]
            again.save()
            assert engine(key)["cart"] == [3]
            assert client.get("/get/").json() == {USER_ID_KEY: "42", "cart": [3]}
    finally:
        server.stop()


def test_errors_carry_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    sas = account_sas()
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    closed = f"http://127.0.0.1:{Azurite(Path('.')).port}/{ACCOUNT_NAME}"
    section = {"ACCOUNT_URL": f"{closed}?{sas}", "OPTIONS": {"retry_total": 0}}
    with table_store("table", {"TABLE": section}) as engine:
        storage = storage_of(engine)
        with caplog.at_level(logging.INFO), pytest.raises(SessionStoreUnavailable) as info:
            engine(keys.new_key()).load()
        cause = info.value.__cause__
        assert cause is not None  # a redacted copy of the SDK's error, without its frames
        assert cause.__traceback__ is None
        assert info.value.__suppress_context__
        texts = (str(info.value), str(cause), repr(cause), repr(storage), repr(app_settings.TABLE))
        for text in (*texts, caplog.text):
            assert signature not in text
            assert ACCOUNT_KEY not in text
    with override_settings(
        AZURE_SESSIONS={"TABLE": {"CONNECTION_STRING": f"AccountKey={ACCOUNT_KEY}"}}
    ):
        assert ACCOUNT_KEY not in repr(app_settings.TABLE)


def test_redact() -> None:
    text = (
        "GET /t?sv=1&sig=abc%2Fdef&se=2 AccountKey=xyz==;Bearer eyJ.abc. SharedAccessSignature=1"
    )
    cleaned = redact(text)
    assert "abc%2Fdef" not in cleaned
    assert "xyz" not in cleaned
    assert "eyJ" not in cleaned
    assert "sig=<redacted>" in cleaned
    assert "se=2" in cleaned


def test_missing_table_without_create_table_is_a_clear_error(azurite: Azurite) -> None:
    settings = table_settings(azurite, TABLE_NAME="nevercreated", CREATE_TABLE=False)
    with table_store("table", {"TABLE": settings}) as engine:
        assert engine(keys.new_key()).load() == {}  # no table, so no such session
        with pytest.raises(TableStorageError, match="Create the table, or set CREATE_TABLE"):
            engine().save()


def test_async_clients_are_closed_with_their_loop(
    table_engine: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Any] = []
    original = Connection.async_client

    def tracked(connection: Connection) -> Any:
        client = original(connection)
        close = client.close

        async def recording_close() -> None:
            closed.append(client)
            await close()

        client.close = recording_close
        return client

    monkeypatch.setattr(Connection, "async_client", tracked)
    storage = storage_of(table_engine)
    key = keys.storage_id(keys.new_key())
    for _ in range(3):
        assert async_to_sync(storage.aload)(key) is None
    assert len(closed) == 3


# Settings and checks


def checks_of(section: dict[str, Any], errors_only: bool = False) -> list[str]:
    return [
        message.id or ""
        for message in check_table(section)
        if not errors_only or message.level >= checks.ERROR
    ]


class _AsyncCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({}, ["E042"]),
        ({"CONNECTION_STRING": ""}, ["E052"]),
        ({"CONNECTION_STRING": b"AccountName=a"}, ["E052"]),
        ({"CONNECTION_STRING": "AccountName=a"}, ["E043"]),
        (
            {"CONNECTION_STRING": "UseDevelopmentStorage=true", "ACCOUNT_URL": "https://a"},
            ["W040"],
        ),
        ({"ACCOUNT_URL": "ftp://a", "CREDENTIAL": "sas"}, ["E044"]),
        ({"ACCOUNT_URL": "https://a", "CREDENTIAL": {"account_name": "a"}}, ["E045"]),
        ({"ACCOUNT_URL": "https://a", "CREDENTIAL": 42}, ["E045"]),
        ({"ACCOUNT_URL": "https://a", "CREDENTIAL": _AsyncCredential()}, ["E045"]),
        ({"ACCOUNT_URL": "https://a"}, ["E046"]),
        ({"ACCOUNT_URL": "http://a", "CREDENTIAL": FakeEntraCredential()}, ["E047"]),
        ({"CONNECTION_STRING": "UseDevelopmentStorage=true", "TABLE_NAME": "a-b"}, ["E048"]),
        ({"CONNECTION_STRING": "UseDevelopmentStorage=true", "TABLE_NAME": "Tables"}, ["E048"]),
        ({"CONNECTION_STRING": "UseDevelopmentStorage=true", "CREATE_TABLE": "yes"}, ["E049"]),
        ({"CONNECTION_STRING": "UseDevelopmentStorage=true", "OPTIONS": []}, ["E050"]),
        ({"CONNECTION_STRING": "UseDevelopmentStorage=true"}, []),
        ({"ACCOUNT_URL": "https://a.table.core.windows.net/?sv=1&sig=x"}, []),
        ({"ACCOUNT_URL": "https://a", "CREDENTIAL": FakeEntraCredential()}, []),
    ],
)
def test_checks(section: dict[str, Any], expected: list[str]) -> None:
    assert [check_id.rsplit(".", 1)[1] for check_id in checks_of(section)] == expected


def test_checks_are_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    with override_settings(
        SESSION_ENGINE="django_azure_sessions.backends.table", AZURE_SESSIONS={"TABLE": {}}
    ):
        found = [m.id for m in checks.run_checks() if str(m.id).startswith("django_azure")]
        assert found == ["django_azure_sessions.E042"]

    def missing() -> Any:
        raise ImportError

    monkeypatch.setattr("django_azure_sessions.backends.table_checks.import_tables", missing)
    assert checks_of({"CONNECTION_STRING": "UseDevelopmentStorage=true"}) == [
        "django_azure_sessions.E041"
    ]


def test_module_imports_without_the_sdk_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['azure.data.tables'] = None\n"
        "import django; django.setup()\n"
        "import django_azure_sessions.backends.table as t\n"
        "try:\n    t.TableStorage.from_settings()\nexcept ImportError as e:\n    print(e)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert "pip install 'django-azure-sessions[table]'" in result.stdout


def test_key_prefixes_are_escaped_into_separate_partitions(azurite: Azurite) -> None:
    from django_azure_sessions.backends.table import SessionStore

    def site(prefix: str) -> Any:
        return override_settings(
            SESSION_ENGINE="django_azure_sessions.backends.table",
            AZURE_SESSIONS={"KEY_PREFIX": prefix, "TABLE": table_settings(azurite)},
        )

    made = {}
    for prefix in ("", "a", "a.s", "shop/eu#1?", "ünï cödé", "x" * 128):
        with site(prefix):
            session = SessionStore()
            session["prefix"] = prefix
            session.save()
            made[prefix] = session.session_key
            namespace = storage_of(SessionStore).namespace
            assert not set("/\\#?.") & set(namespace)
            assert len(namespace) <= 200
    for prefix, key in made.items():
        with site(prefix):
            assert SessionStore(key)["prefix"] == prefix
            assert all(
                SessionStore(k).get("prefix") is None for p, k in made.items() if p != prefix
            )


def test_deleted_session_cannot_be_resaved(table_engine: type[Any], is_async: bool) -> None:
    session = table_engine()
    call(is_async, session, "set", "a", 1)
    call(is_async, session, "save")
    other = table_engine(session.session_key)
    call(is_async, other, "get", "a")
    call(is_async, session, "delete")
    call(is_async, other, "set", "b", 1)
    with pytest.raises(UpdateError):
        call(is_async, other, "save")
    assert index_rows(storage_of(table_engine), keys.storage_id(session.session_key)) == []


def test_page_walks_partitions_in_key_order(table_engine: type[Any]) -> None:
    storage = storage_of(table_engine)
    made = []
    for _ in range(12):
        session = table_engine()
        session.save()
        made.append(keys.storage_id(session.session_key))
    seen = _listed_keys(storage, limit=5)
    assert seen == sorted(seen)
    assert set(made) <= set(seen)
    assert async_to_sync(storage.apage)(None, 3).records == storage.page(None, 3).records


def test_environment_is_read_once_when_the_client_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    url = "https://account.table.core.windows.net"
    assert environment_options(url) == {
        "use_env_settings": False,
        "proxies": {"https": "http://proxy.invalid:3128"},
        "connection_verify": "/etc/ssl/bundle.pem",
    }
    monkeypatch.setenv("NO_PROXY", ".core.windows.net")
    assert "proxies" not in environment_options(url)
    mine = Connection(url, "t", options={"use_env_settings": True, "connection_verify": False})
    assert mine._kwargs()["use_env_settings"] is True
    assert mine._kwargs()["connection_verify"] is False


class ForwardProxy(http.server.ThreadingHTTPServer):
    """A plain-HTTP forward proxy on localhost that counts what goes through it.

    It can fail the next POST requests (transactions) as a network does: ``drop_posts`` are
    not forwarded, ``lose_posts`` are forwarded and applied but their responses lost; both
    end by closing the connection. ``delay_posts`` holds every response for that long.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.drop_posts = 0
        self.lose_posts = 0
        self.delay_posts = 0.0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                target = urllib.parse.urlsplit(self.path)
                proxy.seen.append(f"{self.command} {target.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and proxy.drop_posts > 0:
                    proxy.drop_posts -= 1
                    self.close_connection = True
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"
                }
                upstream.request(
                    self.command,
                    target.path + (f"?{target.query}" if target.query else ""),
                    body,
                    headers,
                )
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                if self.command == "POST" and proxy.lose_posts > 0:
                    proxy.lose_posts -= 1
                    self.close_connection = True
                    return
                if self.command == "POST":
                    time.sleep(proxy.delay_posts)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    # Hop-by-hop headers stay here; this proxy closes every connection after
                    # one response (HTTP/1.0), so a forwarded Keep-Alive would be a lie.
                    if name.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "keep-alive",
                        "content-length",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_MERGE = do_PATCH = _forward

        super().__init__(("127.0.0.1", 0), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the timeout test) leaves a broken pipe here: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def test_a_proxy_from_the_environment_is_used(
    azurite: Azurite, proxy: ForwardProxy, is_async: bool
) -> None:
    with table_store("table", {"TABLE": table_settings(azurite)}) as engine:
        round_trip(engine, is_async)
    assert any(line.startswith("GET /devstoreaccount1/") for line in proxy.seen)
    assert any(line.startswith("POST /devstoreaccount1/$batch") for line in proxy.seen)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A ForwardProxy that the engine's clients use (through ``HTTP_PROXY``)."""
    server = ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


def _posts(proxy: ForwardProxy) -> list[str]:
    return [line for line in proxy.seen if line.startswith("POST")]


def test_a_transaction_dropped_without_response_is_sent_once_more(
    azurite: Azurite, proxy: ForwardProxy, is_async: bool
) -> None:
    """azure-core never retries a POST; the engine sends a transaction a second time."""
    with table_store("table", {"TABLE": table_settings(azurite)}) as engine:
        call(is_async, engine(), "create")  # the table exists, clients are built
        proxy.seen.clear()
        proxy.drop_posts = 1
        session = engine()
        call(is_async, session, "set", USER_ID_KEY, "9")
        call(is_async, session, "save")
        assert _posts(proxy) == ["POST /devstoreaccount1/$batch"] * 2
        assert call(is_async, engine(session.session_key), "get", USER_ID_KEY) == "9"

        proxy.drop_posts = 2  # only once more: then the request fails, and says why
        with pytest.raises(SessionStoreUnavailable, match=r"save: Service(Request|Response)Error"):
            call(is_async, engine(), "create")


def test_a_transaction_applied_twice_is_harmless(
    azurite: Azurite, proxy: ForwardProxy, is_async: bool
) -> None:
    """Each transaction of a session's life is applied, its response lost, and sent again."""
    with table_store("table", {"TABLE": table_settings(azurite)}) as engine:
        call(is_async, engine(), "create")
        storage = storage_of(engine)

        proxy.lose_posts = 1  # create: the second insert finds the key taken, a new key is drawn
        session = engine()
        call(is_async, session, "set", "a", 1)
        call(is_async, session, "save")
        key = session.session_key
        assert call(is_async, engine(key), "get", "a") == 1
        assert proxy.lose_posts == 0

        proxy.lose_posts = 1  # update (signing in moves the session to a transaction)
        loaded = engine(key)
        call(is_async, loaded, "set", USER_ID_KEY, "12")
        call(is_async, loaded, "save")
        assert dict(call(is_async, engine(key), "items")) == {"a": 1, USER_ID_KEY: "12"}
        assert [r.key for r in storage.user_records("12")] == [keys.storage_id(key)]
        assert proxy.lose_posts == 0

        proxy.lose_posts = 1  # delete
        call(is_async, engine(key), "delete")
        assert call(is_async, engine(key), "load") == {}
        assert proxy.lose_posts == 0


def _errors_as_the_sdk_raises_them() -> list[Any]:
    """The exceptions azure-core raises for failed connections, built as its transports do."""
    import socket
    import ssl

    import aiohttp
    import requests
    import urllib3

    def wrapped(kind: Any, inner: BaseException, message: str = "failed") -> Any:
        return kind(message, error=inner)

    reset = requests.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", http.client.RemoteDisconnected("closed without response")
        )
    )
    proxy_reset = requests.exceptions.ProxyError(
        urllib3.exceptions.MaxRetryError(
            None,
            "/",
            urllib3.exceptions.ProxyError(
                "Unable to connect to proxy", http.client.RemoteDisconnected("closed")
            ),
        )
    )
    refused = requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None,
            "/",
            urllib3.exceptions.NewConnectionError(None, "refused"),
        )
    )
    refused.args[0].reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return [
        pytest.param(wrapped(ServiceResponseError, reset), True, id="reset"),
        pytest.param(wrapped(ServiceRequestError, proxy_reset), True, id="proxy-reset"),
        pytest.param(
            wrapped(ServiceRequestError, aiohttp.ServerDisconnectedError()), True, id="aiohttp"
        ),
        pytest.param(
            wrapped(ServiceRequestError, aiohttp.ClientOSError(104, "reset by peer")),
            True,
            id="aiohttp-reset",
        ),
        pytest.param(wrapped(ServiceRequestError, refused), False, id="refused"),
        pytest.param(
            wrapped(ServiceRequestError, socket.gaierror(-2, "Name or service not known")),
            False,
            id="dns",
        ),
        pytest.param(
            wrapped(ServiceRequestError, ssl.SSLCertVerificationError("verify failed")),
            False,
            id="certificate",
        ),
        pytest.param(
            wrapped(ServiceResponseTimeoutError, TimeoutError("read timed out")),
            False,
            id="read-timeout",
        ),
    ]


@pytest.mark.parametrize(("error", "dropped"), _errors_as_the_sdk_raises_them())
def test_only_a_dropped_connection_counts_as_dropped(error: Exception, dropped: bool) -> None:
    # A rule over exceptions: no client is built, no store is needed.
    nowhere = Connection("http://127.0.0.1:9/devstoreaccount1", "t", "UseDevelopmentStorage=true")
    assert Runner(nowhere, create_table=False, workers=1).dropped(error) is dropped


@pytest.mark.parametrize(("resend", "drops", "sent"), [(0, 1, 1), (1, 1, 2), (5, 5, 6), (5, 9, 6)])
def test_a_call_is_sent_again_as_often_as_it_may_while_its_connection_drops(
    resend: int, drops: int, sent: int
) -> None:
    """The runner's one resend rule, for every call: no store is needed."""
    nowhere = Connection("http://127.0.0.1:9/devstoreaccount1", "t", "UseDevelopmentStorage=true")
    runner = Runner(nowhere, create_table=False, workers=1)
    calls = []

    def perform(call: Call) -> str:
        calls.append(call)
        if len(calls) <= drops:
            raise ServiceRequestError("failed", error=ConnectionResetError(104, "reset by peer"))
        return "done"

    steps = runner._resending(Call("submit_transaction", resend=resend))
    if drops < sent:
        assert drive(steps, perform) == "done"
    else:
        with pytest.raises(ServiceRequestError):
            drive(steps, perform)
    assert len(calls) == sent


def test_a_timed_out_transaction_is_not_sent_again(
    azurite: Azurite, proxy: ForwardProxy, is_async: bool
) -> None:
    """The service may still be working on it: the request fails instead of waiting twice."""
    section = table_settings(azurite, OPTIONS={"read_timeout": 1, "retry_total": 0})
    with table_store("table", {"TABLE": section}) as engine:
        call(is_async, engine(), "create")
        proxy.seen.clear()
        proxy.delay_posts = 2
        with pytest.raises(SessionStoreUnavailable, match="Timeout"):
            call(is_async, engine(), "create")
        assert _posts(proxy) == ["POST /devstoreaccount1/$batch"]


def test_without_azurite_installed_the_fixture_fails_and_says_npm_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .fixtures import table as fixture

    monkeypatch.setattr(fixture, "AZURITE", fixture.ROOT / "node_modules" / ".bin" / "absent")
    with pytest.raises(pytest.fail.Exception, match="run `npm ci`"):
        Azurite(tmp_path).start()
