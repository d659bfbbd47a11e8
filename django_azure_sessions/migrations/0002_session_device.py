from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_azure_sessions", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="device",
            field=models.TextField(blank=True, null=True),
        ),
    ]
