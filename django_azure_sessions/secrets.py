"""Secrets: where ``AZURE_SESSIONS`` holds them, and how any text is shown without them.

One place for both, used by the error reporter filter (``debug.py``), by the system check
that asks for it (W002) and by the Table engine's error messages:

- ``redact(text)`` blanks what looks like a secret in free text: the password of a URL, a
  query or connection-string parameter whose name looks secret (``password=``, ``sig=``,
  ``AccountKey=``, ``SharedAccessSignature=``, in any case, with spaces around ``=`` or
  ``;``), a dict entry such as ``'password': '...'``, and ``Bearer`` / ``SharedKey``
  authorization values.
- ``secret_places(config)`` says which settings hold a secret and what the secret strings
  are; ``secrets_of(config)`` is the set of those strings, to find them wherever they are
  copied (a library's local variables, another setting, an environment variable).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus

SUBSTITUTE = "<redacted>"

# Django's own list (API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE) hides KEY_PREFIX and HASH_KEYS
# too; this one is for names of parameters and variables: a key, not keys or a key prefix.
SECRET_NAME = re.compile(r"(?i)pass|pwd|secret|token|credential|signature|auth|^sig$|key$")

_VALUE = r"""(?:'[^']*'|"[^"]*"|[^&;\s'",)}\]]+)"""
_PARAMETER = re.compile(rf"(?<![\w.-])([\w.-]+)(\s*=\s*){_VALUE}")
_DICT_ENTRY = re.compile(r"""(?<![\w.-])(['"])([\w.-]+)\1(\s*:\s*)(?:'[^']*'|"[^"]*"|b'[^']*')""")
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)([^\s/?#]*)(@)")
_AUTHORIZATION = re.compile(r"(?i)\b(bearer\s+|sharedkey(?:lite)?\s+[^\s:]+:)[^\s'\",]+")


def redact(text: str, substitute: str = SUBSTITUTE) -> str:
    """``text`` with every secret it seems to hold replaced by ``substitute``."""

    def parameter(match: re.Match[str]) -> str:
        if not SECRET_NAME.search(match.group(1)):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{substitute}"

    def entry(match: re.Match[str]) -> str:
        if not SECRET_NAME.search(match.group(2)):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{match.group(1)}{match.group(3)}'{substitute}'"

    text = _USERINFO.sub(rf"\g<1>{substitute}\g<3>", text)
    text = _AUTHORIZATION.sub(rf"\g<1>{substitute}", text)
    text = _DICT_ENTRY.sub(entry, text)
    return _PARAMETER.sub(parameter, text)


def _url_secrets(url: str) -> set[str]:
    """The password and the secret-named query parameters of ``url``, as written and decoded."""
    found: set[str] = set()
    userinfo = _USERINFO.search(url)
    if userinfo:
        found.add(userinfo.group(2))
    query = url.partition("?")[2].partition("#")[0]
    found |= _parameter_secrets(query, "&")
    return {variant for value in found for variant in (value, unquote(value), unquote_plus(value))}


def _parameter_secrets(text: str, separator: str) -> set[str]:
    """The values of ``name=value`` pairs whose name looks secret, spaces around them or not."""
    found: set[str] = set()
    for part in text.split(separator):
        name, sep, value = part.partition("=")
        if sep and SECRET_NAME.search(name.strip()):
            found.add(value.strip())
            if "sig=" in value.lower():  # a SAS token in a connection string
                found |= _parameter_secrets(value, "&")
    return found


def _credential_secrets(value: Any) -> set[str]:
    """The strings an Azure credential (or ``{"account_name", "account_key"}``) holds."""
    if isinstance(value, str):
        return {value, *_url_secrets("?" + value.lstrip("?"))}
    if isinstance(value, Mapping):
        return {
            item
            for name, item in value.items()
            if isinstance(item, str) and SECRET_NAME.search(str(name))
        }
    found: set[str] = set()
    named_key = getattr(value, "named_key", None)  # AzureNamedKeyCredential
    if named_key is not None and isinstance(getattr(named_key, "key", None), str):
        found.add(named_key.key)
    for attribute in ("signature", "key"):  # AzureSasCredential, AzureKeyCredential
        item = getattr(value, attribute, None)
        if isinstance(item, str):
            found |= _credential_secrets(item)
    return found


def _options_secrets(options: Mapping[Any, Any]) -> tuple[bool, set[str]]:
    """Whether keyword arguments hold a secret (a password, a credential...), and its strings."""
    held, found = False, set()
    for name, value in options.items():
        if value is None:
            continue
        if SECRET_NAME.search(str(name)):
            held = True
            found |= _credential_secrets(value) if not isinstance(value, str) else {value}
        for text in _strings(value):
            found |= _url_secrets(text)
    return held or bool(found), found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)


def secret_places(config: Any) -> dict[str, set[str]]:
    """Where ``AZURE_SESSIONS`` holds a secret, as ``{"REDIS['URL']": {secret strings}}``.

    A place whose secret is an object with no string of its own (a token credential, a
    credential provider) maps to an empty set.
    """
    places: dict[str, set[str]] = {}
    if not isinstance(config, Mapping):
        return places

    def section(name: str) -> Mapping[Any, Any]:
        value = config.get(name)
        return value if isinstance(value, Mapping) else {}

    def add(place: str, value: Any, finder: Callable[[Any], set[str]]) -> None:
        found = {secret for secret in finder(value) if secret}
        if found:
            places[place] = found

    redis, table = section("REDIS"), section("TABLE")
    for place, value in (
        ("REDIS['URL']", redis.get("URL")),
        ("TABLE['ACCOUNT_URL']", table.get("ACCOUNT_URL")),
    ):
        if isinstance(value, str):
            add(place, value, _url_secrets)
    for name, options in (
        ("REDIS['OPTIONS']", redis.get("OPTIONS")),
        ("REDIS['SENTINEL_OPTIONS']", redis.get("SENTINEL_OPTIONS")),
        ("TABLE['OPTIONS']", table.get("OPTIONS")),
    ):
        if isinstance(options, Mapping):
            held, found = _options_secrets(options)
            if held:
                places[name] = {secret for secret in found if secret}
    connection_string = table.get("CONNECTION_STRING")
    if isinstance(connection_string, str):
        add(
            "TABLE['CONNECTION_STRING']",
            connection_string,
            lambda value: _parameter_secrets(value, ";"),
        )
    for place, value in (
        ("REDIS['CREDENTIAL_PROVIDER']", redis.get("CREDENTIAL_PROVIDER")),
        ("TABLE['CREDENTIAL']", table.get("CREDENTIAL")),
    ):
        if value is not None and value != "":
            places[place] = {secret for secret in _credential_secrets(value) if secret}
    return places


def secrets_of(config: Any) -> set[str]:
    """Every secret string ``AZURE_SESSIONS`` holds: passwords, keys, SAS tokens, signatures."""
    return {secret for found in secret_places(config).values() for secret in found}


def spellings(secret: str) -> set[str]:
    """How ``secret`` may appear in a ``repr``: as is, escaped in a str, or in bytes."""
    return {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether ``text`` holds one of ``secrets``, in any of its ``spellings``."""
    return any(spelling in text for secret in secrets for spelling in spellings(secret))


def without_secrets(text: str, secrets: Iterable[str], substitute: str = SUBSTITUTE) -> str:
    """``text`` redacted, and every one of ``secrets`` in it replaced too (longest first)."""
    text = redact(text, substitute)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, substitute)
    return text
