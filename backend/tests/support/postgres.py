"""The test database seen from outside Django: connections of its own, its locks."""

from __future__ import annotations

import psycopg2


def database_name() -> str:
    """The name of the database pytest-django made for this run."""
    from django.db import connections

    return connections["default"].settings_dict["NAME"]


def raw_connection(dbname: str | None = None):
    """A connection of its own (outside Django's) to the test database, or `dbname`
    on the same server."""
    from django.db import connection

    settings = connection.settings_dict
    return psycopg2.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=dbname or settings["NAME"],
    )


def admin_connection():
    """An autocommit connection to the `postgres` database (to CREATE DATABASE)."""
    admin = raw_connection("postgres")
    admin.autocommit = True
    return admin


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
