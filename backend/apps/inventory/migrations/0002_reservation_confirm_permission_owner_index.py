from django.conf import settings
from django.db import migrations, models

INDEX = "reservation_owner_recent"
TABLE = "inventory_reservation"


def create_index(apps, schema_editor) -> None:
    # CONCURRENTLY on PostgreSQL: the reservation table takes writes during a
    # rolling release; a plain CREATE INDEX would block them while it builds.
    concurrently = (
        "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    )
    schema_editor.execute(
        f"CREATE INDEX {concurrently}IF NOT EXISTS {INDEX} "
        f"ON {TABLE} (owner_id, created_at)"
    )


def drop_index(apps, schema_editor) -> None:
    concurrently = (
        "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    )
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("inventory", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="reservation",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    (
                        "confirm_reservation",
                        "Can confirm any reservation (sell its units)",
                    )
                ],
            },
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="reservation",
                    index=models.Index(fields=["owner", "created_at"], name=INDEX),
                )
            ],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
