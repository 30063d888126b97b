"""Wait until no migration is pending (worker and beat start after the migrate role)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations() -> list[str]:
    connection = connections["default"]
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        connection.close()
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


class Command(BaseCommand):
    help = "Wait (bounded) until every migration is applied."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--timeout", type=float, default=settings.MIGRATION_WAIT_TIMEOUT
        )
        parser.add_argument("--interval", type=float, default=2.0)

    def handle(self, *args: Any, timeout: float, interval: float, **options: Any):
        deadline = time.monotonic() + timeout
        while True:
            pending = pending_migrations()
            if not pending:
                self.stderr.write("no pending migrations")
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{len(pending)} migration(s) still pending after {timeout:g}s "
                    f"(MIGRATION_WAIT_TIMEOUT): {', '.join(pending[:5])}; "
                    "run the migrate role"
                )
            self.stderr.write(
                f"waiting for {len(pending)} pending migration(s): "
                f"{', '.join(pending[:5])}"
            )
            time.sleep(interval)
