"""The indexes in ``Meta.indexes``, and no ``varchar_pattern_ops`` index on PostgreSQL.

Django builds such a ``_like`` copy beside the index of a ``varchar`` column that has
``db_index=True`` or is unique, the primary key included. No query of the engine uses them,
and every insert (and every update that moves a row) writes their entries too. Moving the
indexes to ``Meta.indexes`` drops the copies of ``user_id``'s; the primary key's copy is
dropped by name found in the catalogue. A later ``AlterField`` that changes the type of
``key`` would build it again: a migration that does so should drop it the same way.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def drop_pattern_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("django_azure_sessions", "Session")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = %s AND indexdef LIKE %s",
            [table, "%pattern_ops%"],
        )
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    dependencies = [
        ("django_azure_sessions", "0002_session_device"),
    ]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="expires",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="session",
            name="user_id",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["expires"], name="django_azure_sessions_expires"),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["user_id"], name="django_azure_sessions_user_id"),
        ),
        # Reversed, nothing: the copy is needed by no query.
        migrations.RunPython(drop_pattern_indexes, migrations.RunPython.noop, elidable=True),
    ]
