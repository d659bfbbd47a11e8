"""Session keys: which ones are acceptable, and how they are stored."""

from __future__ import annotations

import hashlib
import re
import secrets

from django.contrib.sessions.backends.base import VALID_KEY_CHARS

from ..conf import app_settings

MIN_LENGTH = 8
MAX_LENGTH = 40
_VALID = re.compile(rf"[a-z0-9]{{{MIN_LENGTH},{MAX_LENGTH}}}")
_HASHED = re.compile(r"[0-9a-f]{64}")


def is_valid(key: object) -> bool:
    """Django's own key alphabet, 8 to 40 characters; anything else is no session."""
    return isinstance(key, str) and _VALID.fullmatch(key) is not None


KEY_LENGTH = 32
_ALPHABET = VALID_KEY_CHARS  # 36 characters
_UNBIASED = 256 - 256 % len(_ALPHABET)  # bytes at or above this would favour some characters


def new_key() -> str:
    """32 characters of Django's key alphabet from the OS's CSPRNG (165 bits).

    The same distribution as Django's ``get_random_string(32, VALID_KEY_CHARS)``, drawn from
    one ``secrets.token_bytes`` call instead of 32 ``secrets.choice`` calls (about 10x faster).
    """
    key = ""
    while len(key) < KEY_LENGTH:
        key += "".join(
            _ALPHABET[byte % len(_ALPHABET)]
            for byte in secrets.token_bytes(KEY_LENGTH)
            if byte < _UNBIASED
        )
    return key[:KEY_LENGTH]


def storage_id(session_key: str) -> str:
    """What the store keeps instead of the cookie value: its SHA-256, unless turned off."""
    if app_settings.HASH_KEYS:
        return hashlib.sha256(session_key.encode("ascii")).hexdigest()
    return session_key


def is_hashed(value: str) -> bool:
    """Whether ``value`` is what ``storage_id()`` makes with ``HASH_KEYS``: 64 hex digits."""
    return _HASHED.fullmatch(value) is not None


def is_storage_id(value: str) -> bool:
    """Whether ``value`` is what ``storage_id()`` makes under the current settings."""
    return is_hashed(value) if app_settings.HASH_KEYS else is_valid(value)
