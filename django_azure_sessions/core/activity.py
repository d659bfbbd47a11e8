"""What a session records of the requests that use it, and the rules built on it.

The package's middleware hands each request to its session (``StoreSession.observe``). The
session then records, with the save it makes anyway, the device it is used from
(``AZURE_SESSIONS["TRACK"]``):

- ``"user_agent"``: the browser's User-Agent, cut to ``MAX_USER_AGENT`` characters;
- ``"ip"``: the client's address, as X-Forwarded-For gives it behind ``TRUSTED_PROXIES``
  proxies, cut to its network prefix (``IP_PREFIX``, by default /24 and /48);
- ``"last_activity"``: a request that reads a session without changing it writes only its
  new expiry and the time (a touch), at most every ``ACTIVITY_INTERVAL`` seconds.

The sign-in time is the record's ``created`` (signing in makes a new session) and the last
activity its ``updated``. Nothing is kept longer than the session itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from ..conf import app_settings
from .storage import Record

MAX_USER_AGENT = 256
logger = logging.getLogger("django_azure_sessions")
# json.dumps() with separators builds an encoder on every call.
_json_encoder = json.JSONEncoder(separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Device:
    """The device a session is used from, as recorded (see the module docstring)."""

    user_agent: str = ""
    address: str | None = None  # a network ("203.0.113.0/24") or a whole address

    @classmethod
    def of(cls, record: Record) -> Device | None:
        """The device recorded with ``record``, or None (nothing recorded, or unreadable)."""
        if not record.device:
            return None
        try:
            fields = json.loads(record.device)
            return cls(str(fields.get("ua", "")), fields.get("ip"))
        except (ValueError, AttributeError):
            return None

    def encode(self) -> str | None:
        """The text a record keeps; None when there is nothing to keep."""
        fields: dict[str, str] = {}
        if self.user_agent:
            fields["ua"] = self.user_agent
        if self.address:
            fields["ip"] = self.address
        return _json_encoder.encode(fields) if fields else None

    @property
    def browser(self) -> str:
        """Like "Firefox on Windows" or "Mobile Safari on iOS"; "Unknown device" when the user
        agent says nothing ua-parser knows."""
        return describe_user_agent(self.user_agent)

    @property
    def location(self) -> str | None:
        """The city and country of the address, where Django's GeoIP2 is set up (GEOIP_PATH
        and the geoip2 package); None otherwise or when the database does not know it."""
        return locate(self.address)


@functools.lru_cache(maxsize=1024)
def describe_user_agent(user_agent: str) -> str:
    if not user_agent:
        return "Unknown device"
    from ua_parser import parse

    parsed = parse(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else None
    system = parsed.os.family if parsed.os else None
    if browser in (None, "Other"):
        browser = None
    if system in (None, "Other"):
        system = None
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


@functools.lru_cache(maxsize=1024)
def locate(address: str | None) -> str | None:
    if not address or not getattr(settings, "GEOIP_PATH", None):
        return None
    try:
        from django.contrib.gis.geoip2 import GeoIP2

        city = GeoIP2().city(address.partition("/")[0])
    except Exception as exc:  # not installed, no database, an address it does not know
        logger.debug("GeoIP2 could not locate an address: %s", type(exc).__name__)
        return None
    place = [part for part in (city.get("city"), city.get("country_name")) if part]
    return ", ".join(place) or None


def client_address(meta: Mapping[str, Any], trusted_proxies: int) -> str | None:
    """The client's address: REMOTE_ADDR, or with ``trusted_proxies`` proxies in front, the
    entry of X-Forwarded-For that the outermost of them appended (entries further left are
    what the client itself sent, and may be forged)."""
    address = meta.get("REMOTE_ADDR")
    if trusted_proxies:
        forwarded = [
            entry.strip() for entry in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry
        ]
        if forwarded:
            address = forwarded[max(0, len(forwarded) - trusted_proxies)]
    return address or None


@functools.lru_cache(maxsize=1024)
def network(address: str | None, prefix: tuple[int, int] | None) -> str | None:
    """``address`` cut to its network (IPv4, IPv6 bits of ``prefix``); None if it is not an
    address."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if prefix is None:
        return str(parsed)
    bits = prefix[0] if parsed.version == 4 else prefix[1]
    host_bits = parsed.max_prefixlen - bits
    if not 0 <= host_bits <= parsed.max_prefixlen:
        raise ValueError(f"{bits} is not a prefix length of an IPv{parsed.version} address")
    # ip_network((parsed, bits), strict=False) writes the same text, at twice the cost.
    return f"{type(parsed)(int(parsed) >> host_bits << host_bits)}/{bits}"


def observed_device(meta: Mapping[str, Any]) -> Device | None:
    """The device of the request whose ``META`` is ``meta``, as ``TRACK`` asks to record it."""
    track = app_settings.TRACK
    user_agent = ""
    if "user_agent" in track:
        user_agent = str(meta.get("HTTP_USER_AGENT", ""))[:MAX_USER_AGENT]
    address = None
    if "ip" in track:
        address = network(
            client_address(meta, app_settings.TRUSTED_PROXIES), app_settings.IP_PREFIX
        )
    if not user_agent and address is None:
        return None
    return Device(user_agent, address)


def ended(record: Record, now: datetime.datetime) -> str | None:
    """Why ``record`` is over by the server's timeouts ("idle" or "absolute"), or None.

    The idle timeout counts from the last recorded activity, which is written at most every
    ``ACTIVITY_INTERVAL``: a session ends up to one interval after its last request plus
    ``IDLE_TIMEOUT``, never before.
    """
    absolute = app_settings.ABSOLUTE_TIMEOUT
    if absolute is not None and _seconds_since(record.created, now) > absolute:
        return "absolute"
    idle = app_settings.IDLE_TIMEOUT
    if (
        idle is not None
        and _seconds_since(record.updated, now) > idle + app_settings.ACTIVITY_INTERVAL
    ):
        return "idle"
    return None


def _seconds_since(then: datetime.datetime | None, now: datetime.datetime) -> float:
    """Seconds from ``then`` to ``now``; 0 when the store did not say (nothing times out)."""
    return 0.0 if then is None else (now - then).total_seconds()
