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


def direct_server() -> tuple[str, int]:
    """Host and port of PostgreSQL itself, past the pooler when the run has one."""
    from django.conf import settings

    direct = settings.DATABASE_DIRECT
    return direct["HOST"], int(direct["PORT"])


def direct_connection(dbname: str = "postgres"):
    """An autocommit connection past the pooler (the run's DATABASE_DIRECT_URL)."""
    from django.conf import settings

    direct = settings.DATABASE_DIRECT
    connection = psycopg2.connect(
        host=direct["HOST"],
        port=direct["PORT"],
        user=direct["USER"],
        password=direct["PASSWORD"],
        dbname=dbname,
    )
    connection.autocommit = True
    return connection


def database_sessions_end(*, name: str) -> int:
    """Terminate every server session on database `name`; return how many."""
    connection = direct_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            (count,) = cursor.fetchone()
    finally:
        connection.close()
    return count


def role_setting_apply(*, name: str, value: str | None) -> None:
    """Set (or, with None, reset) a setting of the test role in the test database,
    and end every session, so that each session opened next starts with it.

    Unlike a session `SET`, this reaches the code's own session also through a
    transaction pooler, which hands each transaction to any server connection.
    """
    from django.db import connection

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_database()")
        role, database = cursor.fetchone()
        target = f"ALTER ROLE {quote(role)} IN DATABASE {quote(database)}"
        if value is None:
            cursor.execute(f"{target} RESET {name}")
        else:
            cursor.execute(f"{target} SET {name} = %s", [value])
    connection.close()
    from django.conf import settings

    if settings.DB_POOLED:
        # Killing PgBouncer's server sessions under it races with it handing one
        # out ("server closed the connection unexpectedly", seen in CI): have it
        # close them itself, as an operator would after such a change.
        pgbouncer_console(connection, f"RECONNECT {database}")
    else:
        database_sessions_end(name=database)


def pgbouncer_console(connection, command: str) -> None:
    """Run one command on the admin console of the PgBouncer `connection` uses."""
    console = psycopg2.connect(
        host=connection.settings_dict["HOST"],
        port=connection.settings_dict["PORT"],
        user="postgres",
        dbname="pgbouncer",
    )
    console.autocommit = True
    try:
        with console.cursor() as cursor:
            cursor.execute(command)
    finally:
        console.close()


def client_connection_kill(connection) -> None:
    """End a Django connection from the other side, as a restart or a proxy would:
    its PostgreSQL session, or, through PgBouncer, its client connection there."""
    from django.conf import settings

    name = connection.settings_dict["NAME"]
    if not settings.DB_POOLED:
        pid = connection.connection.get_backend_pid()
        with direct_connection().cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        return
    # KILL drops the database's clients and servers, then holds new ones until RESUME.
    pgbouncer_console(connection, f"KILL {name}")
    pgbouncer_console(connection, f"RESUME {name}")
