"""A SESSION_SERIALIZER other than Django's, to prove the setting is honoured."""

from __future__ import annotations

import datetime
import json
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(type(value).__name__)


def _hook(value: dict[str, Any]) -> Any:
    if "__datetime__" in value:
        return datetime.datetime.fromisoformat(value["__datetime__"])
    return value


class DateTimeJSONSerializer:
    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, default=_default).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data, object_hook=_hook)
