from __future__ import annotations

from django.db import models


class Session(models.Model):
    """A session kept by the SQL engine. ``key`` is the stored id (hashed by default)."""

    key = models.CharField(max_length=255, primary_key=True)
    data = models.BinaryField()
    expires = models.DateTimeField()
    user_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    version = models.BigIntegerField(default=1)
    created = models.DateTimeField()
    updated = models.DateTimeField()
    device = models.TextField(null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "django_azure_sessions"
        verbose_name = "session"
        verbose_name_plural = "sessions"
        # Declared here rather than with ``db_index=True``: on PostgreSQL that also builds a
        # ``varchar_pattern_ops`` copy of each index on a text column, which no query uses.
        indexes = [
            models.Index(fields=["expires"], name="django_azure_sessions_expires"),
            models.Index(fields=["user_id"], name="django_azure_sessions_user_id"),
        ]

    def __str__(self) -> str:
        return self.key
