"""Stands for a long DDL step (an index build): it sleeps past the test's timeout."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunSQL("SELECT pg_sleep(2)", reverse_sql=migrations.RunSQL.noop),
    ]
