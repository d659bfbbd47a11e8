"""Table suite: this package's Table engine against the raw azure-data-tables floor.

Both on one Azurite (started as the tests start it, from ``node_modules``, in memory, unless
``DAS_BENCH_TABLE_CONNECTION_STRING`` names another endpoint), in one table. The floor is what
any session store on Table Storage must do at least: ``get_entity``, then ``update_entity``
with ``If-Match``, of an already-encoded payload of the same size.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pathlib
import tempfile
from typing import Any

from django.test import override_settings

from django_azure_sessions.backends.table import SessionStore as TableStore
from django_azure_sessions.core import codec, keys
from tests.fixtures.table import Azurite

from .contenders_sql import SessionStoreContender, codec_serializer
from .harness import PAYLOAD, Contender, Target

BASELINE = "django-azure-sessions table"
RAW = "raw azure-data-tables"
TARGETS = [
    Target("cycle", BASELINE, RAW, 0.9),
    Target("read", BASELINE, RAW, 0.9),
]
TABLE_NAME = "benchsessions"


class Endpoint:
    """The connection string both contenders use, and the Azurite behind it (if started)."""

    def __init__(self) -> None:
        self.azurite: Azurite | None = None
        self.users = 0
        self.connection_string = ""

    def acquire(self) -> str:
        if self.users == 0:
            configured = os.environ.get("DAS_BENCH_TABLE_CONNECTION_STRING")
            if configured:
                self.connection_string = configured
            else:
                self.workdir = tempfile.TemporaryDirectory()
                self.azurite = Azurite(pathlib.Path(self.workdir.name))
                self.azurite.start()
                self.connection_string = self.azurite.connection_string
        self.users += 1
        return self.connection_string

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
            self.workdir.cleanup()


ENDPOINT = Endpoint()


class EngineContender(SessionStoreContender):
    """This package's Table engine, as SessionMiddleware uses it."""

    def setup(self) -> None:
        connection_string = ENDPOINT.acquire()
        self.settings = override_settings(
            AZURE_SESSIONS={
                "KEY_PREFIX": "bench:",
                "TABLE": {"CONNECTION_STRING": connection_string, "TABLE_NAME": TABLE_NAME},
            }
        )
        self.settings.enable()

    def teardown(self) -> None:
        self.settings.disable()
        ENDPOINT.release()


class RawTables(Contender):
    """The floor: get_entity, then update_entity with If-Match, of an encoded payload."""

    name = RAW

    def setup(self) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableClient, UpdateMode

        self.client = TableClient.from_connection_string(ENDPOINT.acquire(), TABLE_NAME)
        with contextlib.suppress(ResourceExistsError):
            self.client.create_table()
        self.if_match = MatchConditions.IfNotModified
        self.replace = UpdateMode.REPLACE
        self.payload = codec.encode(PAYLOAD, "benchmark", codec_serializer())

    def teardown(self) -> None:
        self.client.close()
        ENDPOINT.release()

    def _entity(self, key: str) -> dict[str, Any]:
        return {
            "PartitionKey": "raw." + key[:2],
            "RowKey": key,
            "Data": self.payload,
            "Expires": _expires(),
        }

    def prepare(self, count: int) -> list[Any]:
        return [self.create() for _ in range(count)]

    def _get(self, key: str) -> Any:
        entity = self.client.get_entity("raw." + key[:2], key)
        assert entity["Expires"] > datetime.datetime.now(datetime.timezone.utc)
        return entity

    def read(self, handle: Any) -> None:
        assert self._get(handle)["Data"]

    def cycle(self, handle: Any, counter: int) -> None:
        entity = self._get(handle)
        self.client.update_entity(
            self._entity(handle),
            mode=self.replace,
            etag=entity.metadata["etag"],
            match_condition=self.if_match,
        )

    def create(self) -> Any:
        key = keys.new_key()
        self.client.create_entity(self._entity(key))
        return key


class RawTableWrite(RawTables):
    """For the touch suite, a request shape of the raw SDK: ``get_entity``, then
    ``update_entity`` with If-Match, a replace of the whole entity (``RawTables``' cycle, a
    save's floor) or a merge of the expiry and the time (a touch's)."""

    def __init__(self, name: str, merge: bool) -> None:
        self.name = name
        self.merge = merge

    def read(self, handle: Any) -> None:
        if not self.merge:
            return self.cycle(handle, 0)
        from azure.data.tables import UpdateMode

        entity = self._get(handle)
        times = {
            "PartitionKey": "raw." + handle[:2],
            "RowKey": handle,
            "Expires": _expires(),
            "Updated": datetime.datetime.now(datetime.timezone.utc),
        }
        etag, condition = entity.metadata["etag"], self.if_match
        self.client.update_entity(times, UpdateMode.MERGE, etag=etag, match_condition=condition)
        return None


def _expires() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(weeks=2)


def contenders() -> list[Contender]:
    return [EngineContender(BASELINE, TableStore), RawTables()]
