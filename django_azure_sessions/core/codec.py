"""Signed encoding of session data: compact, fast, and still reading Django's own format.

A record holds ``MAGIC + HMAC-SHA256(payload) + payload``, where payload is the output of
``SESSION_SERIALIZER``, deflated from ``COMPRESS_FROM`` bytes (level 1, raw, a 4 KiB window,
primed with ``PRESET``, the keys Django itself writes into sessions): a signed-in session's
JSON shrinks to between a third and two fifths for a few µs of CPU, and every store keeps and
moves fewer bytes. Records of earlier versions (``~d`` deflated without the preset, ``~z``
zlib-wrapped) still read.
The HMAC key is derived from ``SECRET_KEY`` and the session salt, like Django's signing;
``SECRET_KEY_FALLBACKS`` are accepted on read. Data written by Django's
``SessionBase.encode()`` (a ``signing.dumps`` string) is recognised and decoded by
``django.core.signing``, so sessions copied from Django's engines keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from typing import Any

from django.conf import settings
from django.core import signing

from ..conf import SettingsCache

MAGIC = b"~1"  # "~" is outside the alphabet of django.core.signing output
MAGIC_PRESET = b"~p"  # raw deflate primed with PRESET
MAGIC_DEFLATED = b"~d"  # raw deflate, written from 200 bytes before "~p"; still read
MAGIC_COMPRESSED = b"~z"  # zlib, written above 4,096 bytes before "~d"; still read
_MAGICS = (MAGIC, MAGIC_PRESET, MAGIC_DEFLATED, MAGIC_COMPRESSED)
_SIG_SIZE = hashlib.sha256().digest_size
_HEADER = len(MAGIC) + _SIG_SIZE
#: What deflate may refer back to before the payload starts: the keys and values that Django
#: itself writes into sessions (``set_expiry()``, ``CSRF_USE_SESSIONS``, the messages'
#: session storage, and ``login()``'s three keys in the order it writes them). Short JSON
#: cannot repeat itself, so without this a session holding only a sign-in (about 170 bytes)
#: deflates to 3/4 of its size; with it, to 2/5. Records name it by their magic (``~p``): it
#: never changes, and a new one needs a new magic.
PRESET = (
    b'"_session_expiry":'
    b'"_messages":"[[\\"__json_message\\",0,'
    b'"_csrftoken":"'
    b'{"_auth_user_id":"'
    b'","_auth_user_backend":"django.contrib.auth.backends.ModelBackend","_auth_user_hash":"'
)
#: Bytes of serialized payload from which it is deflated, for about 4 µs to deflate and 1 µs
#: to inflate. Below, the gain is a few bytes (``{}``, a counter, a CSRF token alone: 49 bytes
#: to 39); from here it is a third and more (a message, 74 bytes to 45; a sign-in, 174 to 69).
COMPRESS_FROM = 64
_WBITS = -12  # raw deflate (no zlib header or checksum: the HMAC covers it), 4 KiB window
_MEM_LEVEL = 4  # a smaller state to set up per call: faster than the default 8 on small input


def _build_keyring(salt: str) -> tuple[Any, ...]:
    secrets = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    return tuple(_mac(secret, salt) for secret in secrets)


# Per salt: the HMAC of SECRET_KEY first, then one per SECRET_KEY_FALLBACKS entry, each ready
# to be copied. Built on first use, so the hot path reads no setting.
_keyrings: SettingsCache[str, tuple[Any, ...]] = SettingsCache(
    frozenset({"SECRET_KEY", "SECRET_KEY_FALLBACKS"}), _build_keyring
)
_keyring = _keyrings.get


def _mac(secret: str | bytes, salt: str) -> Any:
    if isinstance(secret, str):
        secret = secret.encode()
    key = hashlib.sha256(salt.encode() + b"django-azure-sessions" + secret).digest()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    # The C object behind hmac.HMAC where there is one (OpenSSL): the same copy(), update()
    # and digest(), without a Python call for each.
    return getattr(mac, "_hmac", None) or mac


def _sign(mac: Any, body: bytes) -> bytes:
    mac = mac.copy()
    mac.update(body)
    return mac.digest()  # type: ignore[no-any-return]


# Django's JSONSerializer, call for call: json.dumps() with these separators and json.loads()
# of the latin-1 text, the same bytes and the same errors, without building an encoder and
# a serializer object for every session.
_django_json = signing.JSONSerializer
_json_encoder = json.JSONEncoder(separators=(",", ":"))


def encode(session_dict: dict[str, Any], salt: str, serializer: Any) -> bytes:
    if serializer is _django_json:
        payload = _json_encoder.encode(session_dict).encode("latin-1")
    else:
        payload = serializer().dumps(session_dict)
    magic = MAGIC
    if len(payload) >= COMPRESS_FROM:
        deflate = zlib.compressobj(1, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=PRESET)
        compressed = deflate.compress(payload) + deflate.flush()
        if len(compressed) < len(payload):
            payload, magic = compressed, MAGIC_PRESET
    return magic + _sign(_keyring(salt)[0], payload) + payload


def decode(data: bytes | str, salt: str, serializer: Any) -> dict[str, Any]:
    """Return the session dict; raise ``signing.BadSignature`` if it was not signed by us."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    magic = data[: len(MAGIC)]
    if magic not in _MAGICS:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise signing.BadSignature("Session data is neither format") from None
        return signing.loads(text, salt=salt, serializer=serializer)  # type: ignore[no-any-return]
    signature, payload = data[len(MAGIC) : _HEADER], data[_HEADER:]
    for mac in _keyring(salt):
        if hmac.compare_digest(_sign(mac, payload), signature):
            break
    else:
        raise signing.BadSignature("Session data signature does not match")
    if magic == MAGIC_PRESET:
        payload = _inflate(payload, PRESET)
    elif magic == MAGIC_DEFLATED:
        payload = _inflate(payload, b"")
    elif magic == MAGIC_COMPRESSED:
        payload = zlib.decompress(payload)
    if serializer is _django_json:
        return json.loads(payload.decode("latin-1"))  # type: ignore[no-any-return]
    return serializer().loads(payload)  # type: ignore[no-any-return]


def _inflate(payload: bytes, preset: bytes) -> bytes:
    """``payload`` inflated, primed with ``preset`` (``b""``: none); it must end exactly
    where the deflate stream does."""
    inflate = zlib.decompressobj(_WBITS, zdict=preset) if preset else zlib.decompressobj(_WBITS)
    try:
        inflated = inflate.decompress(payload)
    except zlib.error as exc:  # signed by us, so a bug rather than tampering; still no session
        raise signing.BadSignature(f"Session data does not inflate: {exc}") from exc
    if not inflate.eof or inflate.unused_data:
        raise signing.BadSignature("Session data does not inflate: the stream is cut or runs on")
    return inflated
