"""Apply migrations under a PostgreSQL advisory lock: one replica migrates at a time."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

# A fixed application-wide key: every release and replica contends for the same lock.
MIGRATION_LOCK_KEY = 0x0B4C_E5D0
# SQLSTATE of a lock wait cancelled by lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"


def _connect_directly(connection: BaseDatabaseWrapper) -> None:
    """Point this process's default connection past the pooler, when there is one."""
    direct = settings.DATABASE_DIRECT
    if direct is None:
        return
    connection.close()
    connection.settings_dict = {
        **connection.settings_dict,
        **direct,
        "DISABLE_SERVER_SIDE_CURSORS": False,
    }


class Command(BaseCommand):
    help = "Run migrate while holding a session advisory lock (entrypoint step 3)."

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections["default"]
        if connection.vendor != "postgresql":
            call_command("migrate", interactive=False, verbosity=1)
            return
        # A session-level lock needs a direct connection: behind PgBouncer in
        # transaction mode it would be released as soon as the statement ends. The
        # migrations follow on the same session (DATABASE_DIRECT_URL).
        _connect_directly(connection)
        timeout_ms = settings.MIGRATION_LOCK_TIMEOUT * 1000
        started = time.monotonic()
        with connection.cursor() as cursor:
            # The request-sized statement_timeout (DB_STATEMENT_TIMEOUT_MS) would cancel
            # the lock wait before MIGRATION_LOCK_TIMEOUT and any long DDL (an index
            # build). RESET below restores the connection's own value.
            cursor.execute("SET statement_timeout = 0")
            cursor.execute(f"SET lock_timeout = {int(timeout_ms)}")
            self.stderr.write("waiting for the migration lock")
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
            except OperationalError as exc:
                detail = str(exc).strip()
                if getattr(exc.__cause__, "pgcode", None) == LOCK_NOT_AVAILABLE:
                    raise CommandError(
                        "migration lock wait timed out after "
                        f"{settings.MIGRATION_LOCK_TIMEOUT}s (MIGRATION_LOCK_TIMEOUT): "
                        f"another replica holds it ({detail})"
                    ) from None
                raise CommandError(f"migration lock wait failed: {detail}") from None
            cursor.execute("SET lock_timeout = 0")
            self.stderr.write(
                f"migration lock acquired after {time.monotonic() - started:.1f}s"
            )
            try:
                call_command("migrate", interactive=False, verbosity=1)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
                cursor.execute("RESET statement_timeout")
                self.stderr.write("migration lock released")
