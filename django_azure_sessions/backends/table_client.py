"""Clients of the Table engine: what ``AZURE_SESSIONS["TABLE"]`` describes, built lazily.

Which credential is used, first match wins:

1. ``CONNECTION_STRING`` (its ``AccountKey`` or ``SharedAccessSignature``; or
   ``UseDevelopmentStorage=true`` for Azurite). ``ACCOUNT_URL`` and ``CREDENTIAL`` are then
   ignored, and a system check warns about them.
2. ``ACCOUNT_URL`` with ``CREDENTIAL``, one of: an account key, as
   ``{"account_name": ..., "account_key": ...}`` or an ``AzureNamedKeyCredential``; a SAS
   token, as a string or an ``AzureSasCredential``; a token credential (anything with
   ``get_token``, such as azure-identity's ``DefaultAzureCredential``: managed identity).
3. ``ACCOUNT_URL`` alone, when its query string is a SAS token (with ``CREDENTIAL`` set, the
   query string is dropped).

Client keyword arguments are the defaults below (few, quick retries, fit for a web request),
timeouts derived from ``AZURE_SESSIONS["TIMEOUT"]`` and the environment's proxy and CA bundle
settings (read once, see ``environment_options``), overridden by ``OPTIONS``: any keyword of
azure-data-tables' ``TableClient``.

One session operation (a load, a save, a delete: one or a few calls) shares one time budget,
``TIMEOUT``: ``BudgetPolicy`` caps every attempt's connection and read timeouts by what is
left of it, and stops azure-core's retries once it is spent.
No secret ever appears in a ``repr``, in a log line or in an exception raised here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import inspect
import logging
import os
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from functools import lru_cache
from types import ModuleType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from ..conf import TableSettings
from ..core.steps import adrive, drive
from ..core.storage import Deadline
from ..exceptions import SessionStoreUnavailable
from ..secrets import redact

logger = logging.getLogger("django_azure_sessions")

INSTALL_HINT = "pip install 'django-azure-sessions[table]'"

DEFAULT_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 1,
}
CONNECTION_TIMEOUT = 3  # at most; and never more than the budget
# Listing and clearing (admin, commands) read up to 1,000 entities a call: each call of theirs
# has this long, or the budget if that is longer.
MAINTENANCE_TIMEOUT = 30
DEADLINE_OPTION = "session_deadline"
# What the service answers when it cannot serve now: an outage, after azure-core's retries.
UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DEVELOPMENT_ENDPOINT = "http://127.0.0.1:10002/devstoreaccount1"


class TableStorageError(RuntimeError):
    """Azure Table Storage could not do what the session store asked.

    Raised instead of the SDK's exception so that no URL with a SAS signature reaches a log;
    the message says which endpoint and table, and why.
    """


class BudgetSpent(Exception):
    """The operation's time budget ran out before a request could be sent (again).

    Not an ``AzureError``, so that azure-core's retry policy does not retry it.
    """


def import_tables() -> ModuleType:
    """``azure.data.tables``, or an ImportError that says what to install."""
    try:
        import azure.data.tables
    except ImportError as exc:
        raise ImportError(
            f"The Table session engine needs azure-data-tables: {INSTALL_HINT}"
        ) from exc
    return azure.data.tables


def import_tables_aio() -> ModuleType:
    """``azure.data.tables.aio`` (which needs aiohttp), or an ImportError that says so."""
    try:
        import aiohttp  # noqa: F401
        import azure.data.tables.aio
    except ImportError as exc:
        raise ImportError(
            f"The Table session engine's async methods need azure-data-tables and aiohttp: "
            f"{INSTALL_HINT}"
        ) from exc
    return azure.data.tables.aio


def parse_connection_string(value: str) -> dict[str, str]:
    """The ``Key=value;`` pairs of a storage connection string, keys lower-cased, as azure-core
    reads them (nothing stripped); a ValueError, without the string, if it cannot."""
    from azure.core.utils import parse_connection_string as parse

    return dict(parse(value))


def endpoint_of(connection_string: str) -> str | None:
    """The table endpoint azure-data-tables finds in a connection string, without secrets;
    None if it finds none."""
    if connection_string.lower() == "usedevelopmentstorage=true":
        return DEVELOPMENT_ENDPOINT
    try:
        pairs = parse_connection_string(connection_string)
    except ValueError:
        return None
    if "tableendpoint" in pairs:
        endpoint = pairs["tableendpoint"]
        return (endpoint if endpoint.lower().startswith("http") else f"https://{endpoint}").rstrip(
            "/"
        )
    if "accountname" not in pairs or "tablesecondaryendpoint" in pairs:
        return None
    if "defaultendpointsprotocol" in pairs and "endpointsuffix" in pairs:
        protocol, suffix = pairs["defaultendpointsprotocol"], pairs["endpointsuffix"]
    else:  # the SDK's fallback: https and the default suffix
        protocol, suffix = "https", pairs.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{pairs['accountname']}.table.{suffix}"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def is_token_credential(value: Any) -> bool:
    return callable(getattr(value, "get_token", None))


class AsyncTokenCredential:
    """A synchronous token credential, as the async client wants it.

    ``get_token`` runs in a thread: tokens are cached by the SDK, so this happens about once
    an hour per event loop.
    """

    def __init__(self, credential: Any) -> None:
        self.credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        """The wrapped credential belongs to the settings; it is not closed here."""

    async def __aenter__(self) -> AsyncTokenCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class Connection:
    """How to reach the table. Only ``endpoint`` and ``table_name`` appear in its repr."""

    endpoint: str
    table_name: str
    connection_string: str | None = dataclasses.field(default=None, repr=False)
    account_url: str | None = dataclasses.field(default=None, repr=False)
    credential: Any = dataclasses.field(default=None, repr=False)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    #: Seconds one operation may take (``AZURE_SESSIONS["TIMEOUT"]``).
    budget: float = 5.0

    def _kwargs(self) -> dict[str, Any]:
        longest = max(self.budget, MAINTENANCE_TIMEOUT)
        budget = {
            "connection_timeout": min(CONNECTION_TIMEOUT, self.budget),
            "read_timeout": longest,  # BudgetPolicy gives each attempt what the deadline leaves
            "timeout": longest,  # azure-core's RetryPolicy: one call, retries included
        }
        if "use_env_settings" in self.options or "transport" in self.options:
            kwargs = {**DEFAULT_OPTIONS, **budget, **self.options}
        else:
            kwargs = {
                **DEFAULT_OPTIONS,
                **budget,
                **environment_options(self.endpoint),
                **self.options,
            }
        policy = budget_policy(kwargs["connection_timeout"], kwargs["read_timeout"])
        kwargs["per_retry_policies"] = [*kwargs.get("per_retry_policies", ()), policy]
        return kwargs

    def _credential(self, is_async: bool) -> Any:
        from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

        value = self.credential
        if isinstance(value, Mapping):
            return AzureNamedKeyCredential(value["account_name"], value["account_key"])
        if isinstance(value, str):
            return AzureSasCredential(value.lstrip("?"))
        if is_async and is_token_credential(value) and not is_async_credential(value):
            return AsyncTokenCredential(value)
        return value

    def sync_client(self) -> Any:
        """A new ``azure.data.tables.TableClient``."""
        return self._client(import_tables().TableClient, self._kwargs(), is_async=False)

    def async_client(self) -> Any:
        """A new ``azure.data.tables.aio.TableClient``: use it in one event loop only."""
        return self._client(
            import_tables_aio().TableClient, _async_transport(self._kwargs()), is_async=True
        )

    def _client(self, client_class: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if self.connection_string:
            return client_class.from_connection_string(
                self.connection_string, self.table_name, **kwargs
            )
        from azure.core.credentials import AzureSasCredential

        account_url = self.account_url or ""
        credential = self._credential(is_async)
        if credential is None:
            # As a credential, not in the URL: azure-data-tables leaves a URL's SAS token off
            # transactions ($batch).
            credential = AzureSasCredential(urlsplit(account_url).query)
        return client_class(
            endpoint=_without_query(account_url),
            table_name=self.table_name,
            credential=credential,
            **kwargs,
        )


def _async_transport(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with an aiohttp transport whose one connector holds the TLS settings.

    Given ``connection_verify`` as a CA bundle path (or ``connection_cert``), azure-core's
    aiohttp transport builds a new SSL context for every request, and aiohttp, which pools
    connections by SSL context, a new connection: both are made once here instead.
    """
    verify = kwargs.get("connection_verify", True)
    cert = kwargs.get("connection_cert")
    if "transport" in kwargs or (isinstance(verify, bool) and not cert):
        return kwargs
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport

    kwargs = dict(kwargs)
    kwargs.pop("connection_verify", None)
    kwargs.pop("connection_cert", None)
    context: ssl.SSLContext | bool = (
        False if verify is False else ssl_context(None if verify is True else str(verify), cert)
    )
    session = aiohttp.ClientSession(  # as azure-core makes its own, with this connector
        connector=aiohttp.TCPConnector(ssl=context),
        trust_env=bool(kwargs.get("use_env_settings", True)),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    kwargs["transport"] = AioHttpTransport(session=session, session_owner=True, **kwargs)
    return kwargs


@lru_cache(maxsize=8)
def ssl_context(cafile: str | None, cert: Any = None) -> ssl.SSLContext:
    """One verifying SSL context per CA bundle (and client certificate), for every client."""
    context = ssl.create_default_context(cafile=cafile)
    if cert:
        context.load_cert_chain(*((cert,) if isinstance(cert, str) else cert))
    return context


def budget_policy(connection_timeout: float, read_timeout: float) -> Any:
    """A policy that keeps every attempt of a call within the operation's ``Deadline``.

    azure-core's retry policy bounds a call (``timeout``) and each attempt's connection time,
    but not its read time, and does not know that several calls share one budget. Placed
    after the retry policy (``per_retry_policies``), this caps both timeouts of each attempt
    by what is left of the deadline passed with the call, and ends the call once it is spent.
    """
    return _budget_policy_class()(connection_timeout, read_timeout)


@lru_cache(maxsize=1)
def _budget_policy_class() -> type[Any]:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class BudgetPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def __init__(self, connection_timeout: float, read_timeout: float) -> None:
            self.timeouts = {
                "connection_timeout": connection_timeout,
                "read_timeout": read_timeout,
            }

        def on_request(self, request: Any) -> None:
            options = request.context.options
            deadline: Deadline | None = options.pop(DEADLINE_OPTION, None)
            if deadline is None:
                deadline = request.context.get(DEADLINE_OPTION)
                if deadline is None:
                    return
            else:
                request.context[DEADLINE_OPTION] = deadline  # for the retries
            left = deadline.remaining()
            if left <= 0:
                raise BudgetSpent(f"the {deadline.budget:g} s budget is spent")
            for name, default in self.timeouts.items():
                options[name] = min(options.get(name) or default, left)

    return BudgetPolicy


def environment_options(url: str) -> dict[str, Any]:
    """The proxy and CA bundle settings of the environment for ``url``, read once.

    Left to itself, the HTTP transport (requests, aiohttp) reads the proxy variables on every
    request, which costs about 0.1 ms each time: the environment is read here, when the
    client is built, and passed to the SDK as options instead.
    """
    from requests.utils import get_environ_proxies

    options: dict[str, Any] = {"use_env_settings": False}
    proxies = get_environ_proxies(url)
    if proxies:
        options["proxies"] = proxies
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        options["connection_verify"] = bundle
    return options


def is_async_credential(value: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(value, "get_token", None))


def connection_from_settings(config: TableSettings, budget: float = 5.0) -> Connection:
    """The connection ``config`` describes (assumed valid: the system checks say otherwise);
    ``budget`` is ``AZURE_SESSIONS["TIMEOUT"]``."""
    if config.CONNECTION_STRING:
        endpoint = endpoint_of(config.CONNECTION_STRING) or "(endpoint from connection string)"
        return Connection(
            endpoint,
            config.TABLE_NAME,
            connection_string=config.CONNECTION_STRING,
            options=dict(config.OPTIONS),
            budget=budget,
        )
    return Connection(
        _without_query(config.ACCOUNT_URL or ""),
        config.TABLE_NAME,
        account_url=config.ACCOUNT_URL,
        credential=config.CREDENTIAL,
        options=dict(config.OPTIONS),
        budget=budget,
    )


T = TypeVar("T")


class Call(NamedTuple):
    """One request: a ``TableClient`` method and its arguments ("query" lists entities).

    ``resend``: how many times the request may be sent again when its connection was dropped
    without a response (see ``Runner.dropped``): reads, and transactions whose steps handle
    being applied twice.
    """

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # never mutated
    resend: int = 0


# An operation written once for both kinds of client: a generator that yields the requests
# it needs, is sent their results (or thrown the SDK's exceptions), and returns its value.
Steps = Generator[Call, Any, T]


class Runner:
    """Carries out ``Steps`` with the process's sync client, or the running loop's async one.

    Clients are built on first use. Every call of one run shares its ``Deadline``. Errors the
    steps do not handle become ``SessionStoreUnavailable`` (built by ``unavailable``) when the
    store could not be reached, did not answer in time or answered that it cannot serve now,
    and a ``TableStorageError`` otherwise; the cause chained is a copy of the SDK's exception
    with its message redacted (it may hold a SAS URL).
    """

    def __init__(
        self,
        connection: Connection,
        create_table: bool,
        workers: int,
        unavailable: Callable[[str, BaseException], SessionStoreUnavailable] | None = None,
    ) -> None:
        self.connection = connection
        self.unavailable = unavailable
        self.create_table = create_table
        self.workers = workers
        self._client: Any = None
        self._lock = threading.Lock()
        self._async_clients: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        import_tables()
        from azure.core import exceptions

        self._azure_error = exceptions.AzureError
        self._not_found = exceptions.ResourceNotFoundError
        self._exists = exceptions.ResourceExistsError
        self._no_response = (exceptions.ServiceRequestError, exceptions.ServiceResponseError)
        self._timeouts = (
            exceptions.ServiceRequestTimeoutError,
            exceptions.ServiceResponseTimeoutError,
        )

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self.connection.sync_client()
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _failure(self, exc: Exception, operation: str) -> Exception:
        """What ``exc``, which the steps did not handle, is raised as (its cause set)."""
        cause = _redacted(exc)
        status = getattr(exc, "status_code", None)
        outage = (
            isinstance(exc, (BudgetSpent, *self._no_response)) or status in UNAVAILABLE_STATUSES
        )
        error = (
            self.unavailable(operation, cause)
            if outage and self.unavailable is not None
            else self._error(exc)
        )
        error.__cause__ = cause
        return error

    def _error(self, exc: Exception) -> TableStorageError:
        code = getattr(exc, "error_code", None)
        code = getattr(code, "value", code)
        reason = redact((str(getattr(exc, "message", None) or exc).splitlines() or [""])[0])
        hint = ""
        if code is not None and str(code).endswith("TableNotFound") and not self.create_table:
            hint = " Create the table, or set CREATE_TABLE to True."
        return TableStorageError(
            f"Azure Table Storage at {self.connection.endpoint} (table "
            f"{self.connection.table_name!r}) failed: {type(exc).__name__}"
            f"{f' {code}' if code else ''}: {reason}.{hint}"
        )

    def _is_missing_table(self, exc: Exception, call: Call) -> bool:
        return (
            self.create_table
            and call.method in ("submit_transaction", "upsert_entity")
            and str(getattr(exc, "error_code", "")).endswith("TableNotFound")
        )

    @staticmethod
    def _query_kwargs(call: Call) -> tuple[dict[str, Any], int | None]:
        kwargs = dict(call.kwargs)
        limit = kwargs.pop("limit", None)
        if limit is not None:
            kwargs["results_per_page"] = min(limit, 1000)
        return kwargs, limit

    def _kwargs(self, call: Call, deadline: Deadline) -> dict[str, Any]:
        if deadline.expired():
            raise BudgetSpent(f"the {deadline.budget:g} s budget is spent")
        return {**call.kwargs, DEADLINE_OPTION: deadline}

    def _perform(self, client: Any, call: Call, deadline: Deadline) -> Any:
        if call.method == "query":
            kwargs, limit = self._query_kwargs(call)
            found: list[Any] = []
            try:
                pages = client.query_entities(*call.args, **kwargs, **{DEADLINE_OPTION: deadline})
                for entity in pages:
                    found.append(entity)
                    if len(found) == limit:
                        break
            except self._not_found:
                return []  # no table yet
            return found
        method = getattr(client, call.method)
        try:
            return method(*call.args, **self._kwargs(call, deadline))
        except self._azure_error as exc:
            if not self._is_missing_table(exc, call):
                raise
        with contextlib.suppress(self._exists):
            client.create_table(**{DEADLINE_OPTION: deadline})
        return method(*call.args, **self._kwargs(call, deadline))

    def _resending(self, call: Call) -> Steps[Any]:
        """``call``'s result, the call sent again (up to ``call.resend`` times) when its
        connection was dropped without a response (see ``dropped``). Both runners carry out
        every call through it."""
        for resent in range(call.resend + 1):
            try:
                return (yield call)
            except self._no_response as exc:
                if resent == call.resend or not self.dropped(exc):
                    raise
                logger.debug(
                    "Table: the connection of a %s was dropped: sending it again", call.method
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def dropped(self, exc: Exception) -> bool:
        """Whether the connection was closed or reset under the request, without a response.

        azure-core retries that itself, except for a POST, which a transaction is: a pooled
        connection that a load balancer dropped while idle (Azure's do after 4 minutes) would
        fail the request that reuses it. Timeouts are not dropped connections (the service
        may still be working on the request), nor are failures to connect, resolve or verify
        a certificate: resending would only double the wait for the same error.
        """
        if isinstance(exc, self._timeouts):
            return False
        seen: set[int] = set()
        causes: list[Any] = [exc]
        while causes:
            cause = causes.pop()
            if not isinstance(cause, BaseException) or id(cause) in seen:
                continue
            seen.add(id(cause))
            if type(cause).__name__ == "ServerDisconnectedError":  # aiohttp's
                return True
            if isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            if isinstance(cause, ConnectionResetError | BrokenPipeError):  # RemoteDisconnected
                return True
            causes += (getattr(cause, "inner_exception", None), cause.__cause__, cause.__context__)
            causes += (getattr(cause, "reason", None), *cause.args)  # urllib3 keeps it in reason
        return False

    def _deadline(self, deadline: Deadline | None) -> Deadline:
        if deadline is not None:
            return deadline
        return Deadline(max(self.connection.budget, MAINTENANCE_TIMEOUT))

    def run(self, steps: Steps[T], operation: str = "list", deadline: Deadline | None = None) -> T:
        """The value of ``steps``; ``deadline`` bounds all its calls (without one, as for
        listing and clearing, each call has ``MAINTENANCE_TIMEOUT`` of its own)."""
        client = self.client()

        def perform(call: Call) -> Any:
            return drive(self._resending(call), send)

        def send(call: Call) -> Any:
            return self._perform(client, call, self._deadline(deadline))

        try:
            return drive(steps, perform)
        except (BudgetSpent, self._azure_error) as exc:
            error = self._failure(exc, operation)
            raise error from error.__cause__

    def run_all(self, steps: list[Steps[T]]) -> list[T]:
        """Run ``steps`` side by side, ``workers`` at a time."""
        if len(steps) <= 1:
            return [self.run(item) for item in steps]
        with concurrent.futures.ThreadPoolExecutor(min(self.workers, len(steps))) as pool:
            return list(pool.map(self.run, steps))

    def may_run_a_loop(self) -> bool:
        """Whether sync code may run the async client in an event loop of its own, here: the
        aio client is installed, ``OPTIONS`` names no (sync) transport, and no event loop runs
        in this thread."""
        if "transport" in self.connection.options:
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return False
        try:
            import_tables_aio()
        except ImportError:
            return False
        return True

    async def aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is not None:
            return entry[0]
        client = self.connection.async_client()
        # A client must not outlive its loop: this async generator is closed by the loop's
        # shutdown_asyncgens() (asyncio.run, asgiref, uvicorn), and closes the client with it.
        keeper = _closing(client)
        await keeper.__anext__()
        self._async_clients[loop] = (client, keeper)
        return client

    async def _aperform(self, client: Any, call: Call, deadline: Deadline) -> Any:
        if call.method == "query":
            kwargs, limit = self._query_kwargs(call)
            found: list[Any] = []
            try:
                pages = client.query_entities(*call.args, **kwargs, **{DEADLINE_OPTION: deadline})
                async for entity in pages:
                    found.append(entity)
                    if len(found) == limit:
                        break
            except self._not_found:
                return []
            return found
        method = getattr(client, call.method)
        try:
            return await method(*call.args, **self._kwargs(call, deadline))
        except self._azure_error as exc:
            if not self._is_missing_table(exc, call):
                raise
        with contextlib.suppress(self._exists):
            await client.create_table(**{DEADLINE_OPTION: deadline})
        return await method(*call.args, **self._kwargs(call, deadline))

    async def arun(
        self, steps: Steps[T], operation: str = "list", deadline: Deadline | None = None
    ) -> T:
        client = await self.aclient()

        def perform(call: Call) -> Awaitable[Any]:
            return adrive(self._resending(call), send)

        def send(call: Call) -> Awaitable[Any]:
            return self._aperform(client, call, self._deadline(deadline))

        try:
            return await adrive(steps, perform)
        except (BudgetSpent, self._azure_error) as exc:
            error = self._failure(exc, operation)
            raise error from error.__cause__

    async def arun_all(self, steps: list[Steps[T]]) -> list[T]:
        """Run ``steps`` concurrently, ``workers`` at a time."""
        limit = asyncio.Semaphore(self.workers)

        async def run(item: Steps[T]) -> T:
            async with limit:
                return await self.arun(item)

        return list(await asyncio.gather(*(run(item) for item in steps)))


def _redacted(exc: BaseException) -> BaseException:
    """A copy of ``exc`` (type, message, status) with secrets blanked out, and no traceback:
    its frames' variables would show the request's URL on a debug page."""
    message = redact((str(getattr(exc, "message", None) or exc).splitlines() or [""])[0])
    try:
        copy = type(exc)(message)
    except Exception:
        copy = TableStorageError(f"{type(exc).__name__}: {message}")
    for name in ("status_code", "error_code", "reason"):
        value = getattr(exc, name, None)
        if value is not None:
            with contextlib.suppress(AttributeError):
                setattr(copy, name, value)
    return copy


async def _closing(client: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.close()
