"""The signed record encoding."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.core import signing
from django.core.signing import JSONSerializer
from django.test import override_settings

from django_azure_sessions.core import codec

SALT = "django.contrib.sessions.SessionStore"


def test_round_trip_is_compact_and_signed() -> None:
    data = {"a": 1, "b": [1, 2], "c": {"d": "é"}}
    encoded = codec.encode(data, SALT, JSONSerializer)
    assert encoded.startswith(codec.MAGIC)
    assert len(encoded) == len(codec.MAGIC) + 32 + len(JSONSerializer().dumps(data))
    assert codec.decode(encoded, SALT, JSONSerializer) == data


def test_large_payloads_are_compressed() -> None:
    data = {"text": "lorem ipsum " * 2000}
    encoded = codec.encode(data, SALT, JSONSerializer)
    assert encoded.startswith(codec.MAGIC_COMPRESSED)
    assert len(encoded) < 2000
    assert codec.decode(encoded, SALT, JSONSerializer) == data


def test_small_payloads_are_not_compressed() -> None:
    data = {"text": "a" * (codec.COMPRESS_FROM - 20)}
    encoded = codec.encode(data, SALT, JSONSerializer)
    assert encoded.startswith(codec.MAGIC)
    assert codec.decode(encoded, SALT, JSONSerializer) == data


@pytest.mark.parametrize("position", [3, 20, 40, -1])
def test_any_tampering_is_a_bad_signature(position: int) -> None:
    encoded = bytearray(codec.encode({"is_admin": False}, SALT, JSONSerializer))
    encoded[position] ^= 1
    with pytest.raises(signing.BadSignature):
        codec.decode(bytes(encoded), SALT, JSONSerializer)


def test_signature_depends_on_salt_and_secret() -> None:
    encoded = codec.encode({"a": 1}, SALT, JSONSerializer)
    with pytest.raises(signing.BadSignature):
        codec.decode(encoded, "another.salt", JSONSerializer)
    with override_settings(SECRET_KEY="another-secret-another-secret-another-secret"):
        with pytest.raises(signing.BadSignature):
            codec.decode(encoded, SALT, JSONSerializer)
        with override_settings(SECRET_KEY_FALLBACKS=["tests-secret-key-not-for-production"]):
            assert codec.decode(encoded, SALT, JSONSerializer) == {"a": 1}
        rotated = codec.encode({"a": 2}, SALT, JSONSerializer)
    # The keys are cached per salt: each override above rebuilt them, and so does leaving it.
    with pytest.raises(signing.BadSignature):
        codec.decode(rotated, SALT, JSONSerializer)
    assert codec.decode(encoded, SALT, JSONSerializer) == {"a": 1}


def test_djangos_own_encoding_is_read() -> None:
    encoded = DjangoDBStore().encode({"a": 1})
    assert codec.decode(encoded, SALT, JSONSerializer) == {"a": 1}
    assert codec.decode(encoded.encode(), SALT, JSONSerializer) == {"a": 1}


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe", b"abc:def:ghi", "naïve"])
def test_garbage_is_a_bad_signature(garbage: bytes | str) -> None:
    with pytest.raises(signing.BadSignature):
        codec.decode(garbage, SALT, JSONSerializer)
