"""Session keys: generation and validation."""

from __future__ import annotations

import collections

from django.contrib.sessions.backends.base import VALID_KEY_CHARS

from django_azure_sessions.core import keys


def test_new_keys_are_valid_django_keys() -> None:
    made = {keys.new_key() for _ in range(2000)}
    assert len(made) == 2000
    assert all(len(key) == 32 and set(key) <= set(VALID_KEY_CHARS) for key in made)
    assert all(keys.is_valid(key) for key in made)


def test_new_keys_use_the_alphabet_evenly() -> None:
    counts = collections.Counter("".join(keys.new_key() for _ in range(5000)))
    expected = 5000 * 32 / len(VALID_KEY_CHARS)
    assert set(counts) == set(VALID_KEY_CHARS)
    assert all(abs(n - expected) < expected * 0.1 for n in counts.values())
