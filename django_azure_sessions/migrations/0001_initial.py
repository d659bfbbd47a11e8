from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Session",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("data", models.BinaryField()),
                ("expires", models.DateTimeField(db_index=True)),
                (
                    "user_id",
                    models.CharField(blank=True, db_index=True, max_length=255, null=True),
                ),
                ("version", models.BigIntegerField(default=1)),
                ("created", models.DateTimeField()),
                ("updated", models.DateTimeField()),
            ],
            options={
                "verbose_name": "session",
                "verbose_name_plural": "sessions",
                "db_table": "django_azure_sessions",
            },
        ),
    ]
