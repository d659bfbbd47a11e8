"""System checks of ``AZURE_SESSIONS["SQL"]``: ids E010-E019 and W010-W019.

Run by ``django_azure_sessions.checks`` when the SQL engine is the ``SESSION_ENGINE``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from ..conf import SETTING_NAME, SQLSettings

# The section's shape, checked in ``checks.py`` for every section: (not a dict, unknown keys).
SHAPE_IDS = ("django_azure_sessions.E013", "django_azure_sessions.E010")


def check_sql(section: dict[str, Any]) -> list[CheckMessage]:
    """The SQL section's checks, run when the SQL engine is the SESSION_ENGINE."""
    errors: list[CheckMessage] = []
    database = section.get("DATABASE", "default")
    if not isinstance(database, str) or database not in settings.DATABASES:
        errors.append(
            Error(
                f"{SETTING_NAME}['SQL']['DATABASE'] is {database!r}, not an alias in DATABASES.",
                hint=f"Use one of: {', '.join(map(repr, settings.DATABASES))}.",
                id="django_azure_sessions.E011",
            )
        )
    size = section.get("CLEAR_BATCH_SIZE", SQLSettings.CLEAR_BATCH_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        errors.append(
            Error(
                f"{SETTING_NAME}['SQL']['CLEAR_BATCH_SIZE'] must be a positive integer.",
                hint=f"The default, {SQLSettings.CLEAR_BATCH_SIZE}, keeps each DELETE short.",
                id="django_azure_sessions.E012",
            )
        )
    return errors
