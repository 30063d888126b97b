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
# How often a waiting replica asks for the lock again.
LOCK_POLL_SECONDS = 0.5


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


def _lock_wait(cursor: Any, *, started: float) -> None:
    """Take the migration lock, asking again every LOCK_POLL_SECONDS until
    MIGRATION_LOCK_TIMEOUT.

    Not one blocking pg_advisory_lock: a waiting statement holds a snapshot, and the
    holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to end, while
    the waiter waits for the holder's lock: PostgreSQL then kills one of them
    ("deadlock detected"). A short try per poll holds no snapshot for long.
    """
    timeout = settings.MIGRATION_LOCK_TIMEOUT
    while True:
        try:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        except OperationalError as exc:
            raise CommandError(
                f"migration lock wait failed: {str(exc).strip()}"
            ) from None
        if cursor.fetchone()[0]:
            return
        if time.monotonic() - started >= timeout:
            raise CommandError(
                f"migration lock wait timed out after {timeout}s "
                "(MIGRATION_LOCK_TIMEOUT): another replica holds it"
            )
        time.sleep(LOCK_POLL_SECONDS)


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
        started = time.monotonic()
        with connection.cursor() as cursor:
            # The request-sized statement_timeout (DB_STATEMENT_TIMEOUT_MS) would cancel
            # any long DDL (an index build). RESET below restores the connection's own.
            cursor.execute("SET statement_timeout = 0")
            self.stderr.write("waiting for the migration lock")
            _lock_wait(cursor, started=started)
            self.stderr.write(
                f"migration lock acquired after {time.monotonic() - started:.1f}s"
            )
            try:
                call_command("migrate", interactive=False, verbosity=1)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
                cursor.execute("RESET statement_timeout")
                self.stderr.write("migration lock released")
