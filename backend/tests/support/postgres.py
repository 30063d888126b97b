"""The test database seen from outside Django: connections of its own, its locks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg2

from tests.support.net import free_port
from tests.support.servers import _server_user, _spawn, _wait_ready, postgres_bindir
from tests.support.tls import TlsFiles


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


class TlsPostgres:
    """A PostgreSQL cluster of its own that accepts TLS connections only.

    initdb into a directory under /tmp (PostgreSQL's account must reach it when the
    tests run as root), `ssl=on` with the given certificate and key, and a
    pg_hba.conf of `hostssl` lines only: a TCP connection without TLS matches no
    line and is refused. Trust authentication otherwise, as the launcher's cluster;
    the Unix socket serves the test's own administration.
    """

    def __init__(self, tls: TlsFiles) -> None:
        bindir = postgres_bindir()
        assert bindir is not None, "PostgreSQL's server binaries"
        self.base = Path(tempfile.mkdtemp(prefix="backend-test-tls-postgres-"))
        user = _server_user()
        as_user: dict = {}
        if user is not None:
            os.chown(self.base, user.pw_uid, user.pw_gid)
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        data = self.base / "data"
        initdb = subprocess.run(
            [str(bindir / "initdb"), "--pgdata", str(data), "--username", "postgres",
             "--auth", "trust", "--encoding", "UTF8", "--locale", "C.UTF-8",
             "--no-sync"],
            cwd=self.base, capture_output=True, text=True, check=False, **as_user,
        )  # fmt: skip
        assert initdb.returncode == 0, initdb.stderr
        # The key must belong to the server's account and be private (0600).
        for source, name in ((tls.cert, "server.crt"), (tls.key, "server.key")):
            target = data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if user is not None:
                os.chown(target, user.pw_uid, user.pw_gid)
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostssl all all ::1/128 trust\n"
        )
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.process = _spawn(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.base}",
             "-c", "ssl=on", "-c", "ssl_cert_file=server.crt",
             "-c", "ssl_key_file=server.key", "-c", "fsync=off"],
            cwd=self.base, log=self.log, death_signal=signal.SIGINT, **as_user,
        )  # fmt: skip
        assert _wait_ready(self.process, self._ready, self.log, "TLS PostgreSQL")

    def _ready(self) -> bool:
        try:
            self.admin().close()
        except psycopg2.OperationalError:
            return False
        return True

    def admin(self):
        """An autocommit connection over the Unix socket (no TLS needed there)."""
        connection = psycopg2.connect(
            host=str(self.base), port=self.port, user="postgres", dbname="postgres"
        )
        connection.autocommit = True
        return connection

    def url(self, database: str, *, ca: Path, sslmode: str = "verify-full") -> str:
        """DATABASE_URL as the guide writes it, to the name the certificate holds."""
        return (
            f"postgres://postgres@localhost:{self.port}/{database}"
            f"?sslmode={sslmode}&sslrootcert={ca}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            self.process.wait(timeout=15)
        shutil.rmtree(self.base, ignore_errors=True)
