"""The monitor's unmanaged model: permissions only, no table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Monitor",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False,
                                        verbose_name="ID")),
            ],
            options={
                "verbose_name": "monitor",
                "verbose_name_plural": "monitor",
                "permissions": [
                    ("view_monitor", "Can view the job queue monitor"),
                    ("manage_monitor",
                     "Can retry, delete and clear jobs in the job queue monitor"),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
