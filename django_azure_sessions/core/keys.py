"""Session keys: which ones are acceptable, and how they are stored."""

from __future__ import annotations

import hashlib
import re

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils.crypto import get_random_string

from ..conf import app_settings

MIN_LENGTH = 8
MAX_LENGTH = 40
_VALID = re.compile(rf"[a-z0-9]{{{MIN_LENGTH},{MAX_LENGTH}}}")


def is_valid(key: object) -> bool:
    """Django's own key alphabet, 8 to 40 characters; anything else is no session."""
    return isinstance(key, str) and _VALID.fullmatch(key) is not None


def new_key() -> str:
    return get_random_string(32, VALID_KEY_CHARS)


def storage_id(session_key: str) -> str:
    """What the store keeps instead of the cookie value: its SHA-256, unless turned off."""
    if app_settings.HASH_KEYS:
        return hashlib.sha256(session_key.encode("ascii")).hexdigest()
    return session_key
