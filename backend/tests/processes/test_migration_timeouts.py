"""Migrations are not bound by the requests' statement_timeout; the lock wait is."""

from __future__ import annotations

import psycopg2
import pytest

from apps.core.management.commands.migrate_locked import MIGRATION_LOCK_KEY
from tests.support.env import with_venv_path
from tests.support.processes import run_python

pytestmark = pytest.mark.slow

SHOW_AND_SLEEP = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    print("statement_timeout", cursor.fetchone()[0])
    try:
        cursor.execute("SELECT pg_sleep(2)")
    except Exception as exc:
        print("long query:", type(exc).__name__, str(exc).splitlines()[0])
"""


def test_migration_longer_than_the_statement_timeout_succeeds(
    start_entrypoint,
    production_env,
    empty_database,
) -> None:
    _, database = empty_database
    slow = {
        **database,
        "DJANGO_SETTINGS_MODULE": "tests.support.slow_migration_settings",
        "DB_STATEMENT_TIMEOUT_MS": "1000",
    }
    process = start_entrypoint("migrate", **slow)
    assert process.process.wait(timeout=180) == 0, process.lines
    assert any(
        "Applying slow_migration.0001_slow... OK" in line for line in process.lines
    ), process.output()

    # The app's own connections still carry the 1 s timeout.
    env = with_venv_path({**production_env, **slow})
    result = run_python(["manage.py", "shell", "-c", SHOW_AND_SLEEP], env=env)
    assert result.returncode == 0, result.stderr
    assert "statement_timeout 1s" in result.stdout
    assert (
        "long query: OperationalError canceling statement due to statement timeout"
        in result.stdout
    )


def test_lock_wait_honours_migration_lock_timeout(
    production_env,
    empty_database,
) -> None:
    _, database = empty_database
    # A session lock, so past the pooler when there is one.
    holder = psycopg2.connect(
        database.get("DATABASE_DIRECT_URL", database["DATABASE_URL"])
    )
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        env = with_venv_path(
            {
                **production_env,
                **database,
                "DB_STATEMENT_TIMEOUT_MS": "500",
                "MIGRATION_LOCK_TIMEOUT": "3",
            }
        )
        result = run_python(["manage.py", "migrate_locked"], env=env)
    finally:
        holder.close()
    assert result.returncode == 1
    # Given up at MIGRATION_LOCK_TIMEOUT (3 s), not cut by the 0.5 s statement_timeout.
    assert (
        "migration lock wait timed out after 3s (MIGRATION_LOCK_TIMEOUT): "
        "another replica holds it" in result.stderr
    )
    assert "statement timeout" not in result.stderr
