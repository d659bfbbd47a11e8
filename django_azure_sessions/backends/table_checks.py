"""System checks of ``AZURE_SESSIONS["TABLE"]``: ids E040-E059 and W040-W059.

Run by ``django_azure_sessions.checks`` when the Table engine is the ``SESSION_ENGINE``. This
module imports without azure-data-tables: the checks then say what to install (E041).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error, Warning

from ..conf import SETTING_NAME
from ..secrets import redact
from .table_client import (
    INSTALL_HINT,
    endpoint_of,
    import_tables,
    is_async_credential,
    is_token_credential,
    parse_connection_string,
)

# The section's shape, checked in ``checks.py`` for every section: (not a dict, unknown keys).
SHAPE_IDS = ("django_azure_sessions.E051", "django_azure_sessions.E040")

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


def _error(check_id: str, msg: str, hint: str) -> Error:
    return Error(
        f"{SETTING_NAME}['TABLE']{msg}", hint=hint, id=f"django_azure_sessions.{check_id}"
    )


def _credential_error(value: Any) -> str | None:
    """Why ``value`` is not a usable CREDENTIAL, or None if it is."""
    if value is None or isinstance(value, str):
        return None if value != "" else "is an empty string"
    if isinstance(value, Mapping):
        if set(value) != {"account_name", "account_key"} or not all(
            isinstance(item, str) and item for item in value.values()
        ):
            return "as a dict must be exactly {'account_name': str, 'account_key': str}"
        return None
    if is_token_credential(value):
        if is_async_credential(value):
            return "is an async token credential (azure.identity.aio)"
        return None
    if hasattr(value, "named_key") or hasattr(value, "signature"):
        return None  # AzureNamedKeyCredential, AzureSasCredential
    return f"is a {type(value).__name__}, which is not a credential"


_KNOWN_KEYS = {
    "accountkey",
    "accountname",
    "defaultendpointsprotocol",
    "endpointsuffix",
    "sharedaccesssignature",
    "tableendpoint",
    "tablesecondaryendpoint",
    "usedevelopmentstorage",
}


def connection_string_problem(value: str) -> str | None:
    """Why azure-data-tables would refuse ``value``, in words that hold none of its secrets.

    What it refuses when the client is built (azure-core cannot parse it; no key or SAS
    token; only a secondary endpoint), and on the first request, before anything is sent
    (a host that is not one; an AccountKey that is not base64). azure-data-tables strips no
    spaces: ``; AccountKey=...`` is an unknown key named " AccountKey".
    """
    if value.lower() == "usedevelopmentstorage=true":
        return None
    try:
        pairs = parse_connection_string(value)
    except ValueError:
        names = [part.partition("=")[0].lower() for part in value.strip().rstrip(";").split(";")]
        twice = sorted({name for name in names if names.count(name) > 1} & _KNOWN_KEYS)
        if twice:
            return f"names {', '.join(twice)} more than once"
        return "is not Key=value pairs separated by ';' (azure-core cannot read it)"
    spaced = sorted(name.strip() for name in pairs if name != name.strip())
    if spaced:
        known = ", ".join(repr(name) for name in spaced if name in _KNOWN_KEYS)
        return (
            f"has spaces around key names{f' ({known})' if known else ''}, which "
            "azure-data-tables keeps: it does not find those keys"
        )
    if "usedevelopmentstorage" in pairs:
        return (
            "sets UseDevelopmentStorage: azure-data-tables reads only 'UseDevelopmentStorage=true'"
        )
    if "sharedaccesssignature" not in pairs and not {"accountname", "accountkey"} <= pairs.keys():
        return "names no AccountName and AccountKey, nor a SharedAccessSignature"
    if "tableendpoint" not in pairs and "tablesecondaryendpoint" in pairs:
        return "names a TableSecondaryEndpoint without a TableEndpoint"
    endpoint = endpoint_of(value)
    if endpoint is None:
        return "names no table endpoint: neither TableEndpoint nor AccountName"
    from urllib3.util import parse_url

    try:
        parse_url(endpoint)
    except ValueError:
        return f"gives the table endpoint {redact(endpoint)!r}, which is not a URL"
    if "accountname" in pairs and "accountkey" in pairs:
        try:
            base64.b64decode(pairs["accountkey"].encode())
        except ValueError:
            return "has an AccountKey that is not base64 (copy it whole)"
    try:
        import_tables().TableClient.from_connection_string(value, "sessions").close()
    except ValueError as exc:  # what a later azure-data-tables may refuse besides
        return f"is refused by azure-data-tables: {redact(str(exc))}"
    return None


def check_table(section: dict[str, Any]) -> list[CheckMessage]:
    """The TABLE section's checks, run when the Table engine is the SESSION_ENGINE."""
    errors: list[CheckMessage] = []
    tables_installed = True
    try:
        import_tables()
    except ImportError:
        tables_installed = False
        errors.append(
            _error(
                "E041",
                " is used, but azure-data-tables is not installed.",
                f"Install the engine's extra: {INSTALL_HINT}",
            )
        )
    connection_string = section.get("CONNECTION_STRING")
    account_url = section.get("ACCOUNT_URL")
    credential = section.get("CREDENTIAL")
    if connection_string is not None:
        if not isinstance(connection_string, str) or not connection_string:
            errors.append(
                _error(
                    "E052",
                    "['CONNECTION_STRING'] must be a non-empty string.",
                    "Copy it from the storage account's 'Access keys' page, or use "
                    "'UseDevelopmentStorage=true' for Azurite; an empty one often is an "
                    "environment variable that is not set.",
                )
            )
        elif tables_installed:
            # One id for every reason the SDK refuses the string (or would misread it): the
            # fix is the same, copying it whole from the portal; the message names the part.
            problem = connection_string_problem(connection_string)
            if problem is not None:
                errors.append(
                    _error(
                        "E043",
                        f"['CONNECTION_STRING'] {problem}.",
                        "Copy it from the storage account's 'Access keys' page as it is: "
                        "Key=value pairs separated by ';', nothing around ';' or '=', with "
                        "AccountName and AccountKey (or TableEndpoint and SharedAccessSignature).",
                    )
                )
        if account_url is not None or credential is not None:
            errors.append(
                Warning(
                    f"{SETTING_NAME}['TABLE'] has CONNECTION_STRING and also ACCOUNT_URL or "
                    "CREDENTIAL; the connection string wins and they are ignored.",
                    hint="Keep one way of connecting.",
                    id="django_azure_sessions.W040",
                )
            )
    elif account_url is None:
        errors.append(
            _error(
                "E042",
                " says nowhere to connect.",
                "Set CONNECTION_STRING, or ACCOUNT_URL (https://<account>.table.core.windows.net) "
                "with CREDENTIAL.",
            )
        )
    else:
        parts = urlsplit(account_url) if isinstance(account_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(
                _error(
                    "E044",
                    "['ACCOUNT_URL'] must be an http(s) URL.",
                    "For example https://<account>.table.core.windows.net, or "
                    "https://<account>.table.cosmos.azure.com for Cosmos DB for Table.",
                )
            )
        else:
            problem = _credential_error(credential)
            if problem is not None:
                errors.append(
                    _error(
                        "E045",
                        f"['CREDENTIAL'] {problem}.",
                        "Use {'account_name': ..., 'account_key': ...}, a SAS token string, "
                        "an AzureNamedKeyCredential or AzureSasCredential, or a synchronous "
                        "token credential such as azure.identity.DefaultAzureCredential() "
                        "(the async paths use it too).",
                    )
                )
            elif credential is None and "sig=" not in parts.query:
                errors.append(
                    _error(
                        "E046",
                        "['ACCOUNT_URL'] is set without CREDENTIAL and holds no SAS token.",
                        "Set CREDENTIAL, e.g. azure.identity.DefaultAzureCredential() for a "
                        "managed identity.",
                    )
                )
            elif is_token_credential(credential) and parts.scheme != "https":
                errors.append(
                    _error(
                        "E047",
                        "['ACCOUNT_URL'] must be https:// with a token credential.",
                        "Microsoft Entra ID tokens are only ever sent over TLS.",
                    )
                )
    table_name = section.get("TABLE_NAME", "djangosessions")
    if (
        not isinstance(table_name, str)
        or not _TABLE_NAME.fullmatch(table_name)
        or table_name.lower() == "tables"
    ):
        errors.append(
            _error(
                "E048",
                f"['TABLE_NAME'] {table_name!r} is not a valid table name.",
                "3 to 63 letters and digits, starting with a letter (not 'tables').",
            )
        )
    if not isinstance(section.get("CREATE_TABLE", True), bool):
        errors.append(
            _error(
                "E049",
                "['CREATE_TABLE'] must be True or False.",
                "True creates the table on the first save; False expects it to exist.",
            )
        )
    options = section.get("OPTIONS", {})
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        errors.append(
            _error(
                "E050",
                "['OPTIONS'] must be a dict of TableClient keyword arguments.",
                'For example {"read_timeout": 5, "retry_total": 3}.',
            )
        )
    return errors
