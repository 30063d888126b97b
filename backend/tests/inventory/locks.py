"""Watch PostgreSQL's lock table, so concurrency tests step on facts, not sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg2
from django.db import connection


def raw_connection():
    """A connection of its own to the test database (outside Django's)."""
    settings = connection.settings_dict
    return psycopg2.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=settings["NAME"],
    )


def blocked_backends() -> int:
    """Count this database's sessions waiting for a lock another session holds."""
    watcher = raw_connection()
    try:
        with watcher.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND cardinality(pg_blocking_pids(pid)) > 0"
            )
            (count,) = cursor.fetchone()
    finally:
        watcher.close()
    return count


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
