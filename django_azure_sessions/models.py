from __future__ import annotations

from django.db import models


class Session(models.Model):
    """A session kept by the SQL engine. ``key`` is the stored id (hashed by default)."""

    key = models.CharField(max_length=255, primary_key=True)
    data = models.BinaryField()
    expires = models.DateTimeField(db_index=True)
    user_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)  # noqa: DJ001
    version = models.BigIntegerField(default=1)
    created = models.DateTimeField()
    updated = models.DateTimeField()
    device = models.TextField(null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "django_azure_sessions"
        verbose_name = "session"
        verbose_name_plural = "sessions"

    def __str__(self) -> str:
        return self.key
