"""What a transaction pooler (PgBouncer, RDS Proxy) changes for this project.

A pooler in transaction mode gives each transaction whichever server connection is
free, so nothing may rely on a session: no startup `options` (PgBouncer refuses
them), no `SET` without `LOCAL`, no session advisory lock, no server-side cursor.
The statement_timeout that the direct connection passes at start-up becomes a
setting of the database role in this database, which PostgreSQL applies to every
new server session the pooler opens. The migrate role writes it after each migrate,
over the direct connection (DATABASE_DIRECT_URL); it costs no round trip per request.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper


def statement_timeout_apply(
    *, connection: BaseDatabaseWrapper, milliseconds: int
) -> str:
    """Make `milliseconds` the statement_timeout of the role's new sessions here.

    Return the statement run. A role may set its own defaults (no superuser needed).
    Server connections a pooler opened before keep their value until it recycles
    them (PgBouncer: server_lifetime, or RECONNECT on its console).
    """
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_database()")
        role, database = cursor.fetchone()
        statement = (
            f"ALTER ROLE {quote(role)} IN DATABASE {quote(database)} "
            f"SET statement_timeout = {int(milliseconds)}"
        )
        cursor.execute(statement)
    return statement


def statement_timeout_read(*, connection: BaseDatabaseWrapper) -> int:
    """Return the statement_timeout, in milliseconds, of a session on `connection`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"
        )
        (value,) = cursor.fetchone()
    return int(value)


def apply_role_settings(using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: pooled, the role carries the statement_timeout."""
    connection = connections[using]
    if not settings.DB_POOLED or connection.vendor != "postgresql":
        return
    statement_timeout_apply(
        connection=connection, milliseconds=settings.DB_STATEMENT_TIMEOUT_MS
    )
