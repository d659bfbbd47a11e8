"""The signed record encoding."""

from __future__ import annotations

import os
import zlib

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


@pytest.mark.parametrize("repeat", [20, 2000])
def test_payloads_from_the_threshold_are_deflated(repeat: int) -> None:
    data = {"text": "lorem ipsum " * repeat}
    encoded = codec.encode(data, SALT, JSONSerializer)
    assert encoded.startswith(codec.MAGIC_PRESET)
    assert len(encoded) < len(JSONSerializer().dumps(data)) / 2
    assert codec.decode(encoded, SALT, JSONSerializer) == data


def test_the_preset_deflates_what_django_writes_at_sign_in() -> None:
    data = {
        "_auth_user_id": "1042",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "5" * 64,
    }
    plain = JSONSerializer().dumps(data)
    encoded = codec.encode(data, SALT, JSONSerializer)
    deflate = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
    without_preset = deflate.compress(plain) + deflate.flush()
    assert len(encoded) - len(codec.MAGIC) - 32 < len(without_preset) * 0.6 < len(plain) * 0.5
    assert codec.decode(encoded, SALT, JSONSerializer) == data


def test_records_deflated_without_the_preset_still_read() -> None:
    """Development builds wrote ``~d`` + HMAC + raw deflate with no preset dictionary."""
    data = {"text": "lorem ipsum " * 50}
    deflate = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
    payload = deflate.compress(JSONSerializer().dumps(data)) + deflate.flush()
    old = codec.MAGIC_DEFLATED + codec._sign(codec._keyring(SALT)[0], payload) + payload
    assert codec.decode(old, SALT, JSONSerializer) == data


@pytest.mark.parametrize("cut", ["short", "long"])
def test_a_signed_stream_cut_short_or_running_on_is_a_bad_signature(cut: str) -> None:
    """Signed by this package, so it cannot happen but by a bug: still no session, not a
    session with part of its data."""
    encoded = codec.encode({"text": "lorem ipsum " * 50}, SALT, JSONSerializer)
    stream = encoded[len(codec.MAGIC) + 32 :]
    stream = stream[:-3] if cut == "short" else stream + b"trailing"
    bad = codec.MAGIC_PRESET + codec._sign(codec._keyring(SALT)[0], stream) + stream
    with pytest.raises(signing.BadSignature, match="does not inflate"):
        codec.decode(bad, SALT, JSONSerializer)


def test_records_of_the_zlib_format_still_read() -> None:
    """0.3 wrote ``~z`` + HMAC + zlib stream above 4,096 bytes: such sessions stay readable."""
    data = {"text": "lorem ipsum " * 2000}
    payload = zlib.compress(JSONSerializer().dumps(data), 1)
    old = codec.MAGIC_COMPRESSED + codec._sign(codec._keyring(SALT)[0], payload) + payload
    assert codec.decode(old, SALT, JSONSerializer) == data


@pytest.mark.parametrize("magic", [codec.MAGIC_PRESET, codec.MAGIC_DEFLATED])
def test_a_signed_payload_that_does_not_inflate_is_a_bad_signature(magic: bytes) -> None:
    payload = b"not deflate at all"
    bad = magic + codec._sign(codec._keyring(SALT)[0], payload) + payload
    with pytest.raises(signing.BadSignature, match="does not inflate"):
        codec.decode(bad, SALT, JSONSerializer)


def test_incompressible_payloads_stay_plain() -> None:
    data = {"text": os.urandom(300).hex()}
    encoded = codec.encode(data, SALT, JSONSerializer)
    assert len(JSONSerializer().dumps(data)) >= codec.COMPRESS_FROM
    # Hex deflates a little (16 symbols in 8 bits); whatever is smaller is written.
    assert len(encoded) <= len(codec.MAGIC) + 32 + len(JSONSerializer().dumps(data))
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


class _Unserializable:
    pass


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1.5, None, True], "c": {"d": "é", "e": "\u2028 \U0001f600"}},
        {"big": 2**80, "neg": -0.0, "nan": float("nan"), "inf": float("-inf")},
        {"tuple": (1, 2), "nested": [[[{}]]], "1": "int keys become strings"},
        {1: "one", 2.5: "two and a half", False: "no", None: "none"},
    ],
)
def test_djangos_json_serializer_writes_the_same_bytes_through_the_codec(
    data: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "COMPRESS_FROM", 2**31)  # the serializer's bytes, not deflated
    payload = codec.encode(data, SALT, JSONSerializer)[len(codec.MAGIC) + 32 :]
    assert payload == JSONSerializer().dumps(data)
    assert repr(codec.decode(codec.encode(data, SALT, JSONSerializer), SALT, JSONSerializer)) == (
        repr(JSONSerializer().loads(JSONSerializer().dumps(data)))
    )


@pytest.mark.parametrize("value", [_Unserializable(), {1, 2}, b"bytes"])
def test_djangos_json_serializer_refuses_the_same_values_with_the_same_error(
    value: object,
) -> None:
    with pytest.raises(TypeError) as django_error:
        JSONSerializer().dumps({"v": value})
    with pytest.raises(TypeError) as our_error:
        codec.encode({"v": value}, SALT, JSONSerializer)
    assert str(our_error.value) == str(django_error.value)


def test_a_circular_session_is_refused_as_django_refuses_it() -> None:
    data: dict[str, object] = {}
    data["self"] = data
    with pytest.raises(ValueError, match="Circular reference"):
        JSONSerializer().dumps(data)
    with pytest.raises(ValueError, match="Circular reference"):
        codec.encode(data, SALT, JSONSerializer)


def test_a_subclass_of_djangos_serializer_is_called() -> None:
    class Shouting(JSONSerializer):
        def dumps(self, obj: object) -> bytes:
            return super().dumps({k.upper(): v for k, v in obj.items()})  # type: ignore[attr-defined]

    encoded = codec.encode({"a": 1}, SALT, Shouting)
    assert codec.decode(encoded, SALT, JSONSerializer) == {"A": 1}
