"""Through PgBouncer in transaction mode: what survives the pooler and what bypasses it.

Each test starts a PgBouncer of its own in front of the run's PostgreSQL, so these
run in every lane, pooled or not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.support.env import with_venv_path
from tests.support.postgres import direct_server
from tests.support.processes import run_python
from tests.support.servers import pgbouncer_binary, start_pgbouncer

STATEMENT_TIMEOUT_MS = 500

# Run in a process with the pooled settings: the session's timeout, and a query
# that outlasts it.
SHOW_AND_SLEEP = """
from django.db import connection
from apps.core.db.pooling import statement_timeout_read
print("statement_timeout", statement_timeout_read(connection=connection))
try:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(2)")
    print("long query: finished")
except Exception as exc:
    print("long query:", type(exc).__name__, str(exc).splitlines()[0])
"""

# The readiness probe's database check, then what the next client's session sees.
PROBE_THEN_SHOW = """
from django.db import connection
from apps.core.http import readiness
from apps.core.db.pooling import statement_timeout_read
readiness._check_database()
print("after the probe", statement_timeout_read(connection=connection))
"""


class Bouncer:
    def __init__(self, directory: Path, pool_size: int) -> None:
        binary = pgbouncer_binary()
        assert binary is not None, "pgbouncer is missing: apt-get install pgbouncer"
        self.host, postgres_port = direct_server()
        self.postgres_port = postgres_port
        self.process, self.port = start_pgbouncer(
            binary, directory, postgres_port=postgres_port, pool_size=pool_size
        )

    def env(self, database: str) -> dict[str, str]:
        """The variables of a pooled deployment of `database`."""
        return {
            "DB_POOL_MODE": "transaction",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.port}/{database}",
            "DATABASE_DIRECT_URL": (
                f"postgres://postgres@{self.host}:{self.postgres_port}/{database}"
            ),
            "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
        }

    def console(self, command: str) -> list[dict]:
        """Run one command on the pooler's admin console; return its rows."""
        console = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="pgbouncer"
        )
        console.autocommit = True
        try:
            with console.cursor() as cursor:
                cursor.execute(command)
                if cursor.description is None:
                    return []
                columns = [c.name for c in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor]
        finally:
            console.close()

    def reconnect(self, database: str) -> None:
        """Recycle the server connections to `database` (the operator's RECONNECT)."""
        self.console(f"RECONNECT {database}")

    def server_connections(self, database: str) -> int:
        """Server connections the pooler holds to `database` (its admin console)."""
        return sum(
            1 for row in self.console("SHOW SERVERS") if row["database"] == database
        )


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    # A pool of one: every client of a database shares one server session, so
    # session state left by one client is what the next one sees.
    directory = Path(tempfile.mkdtemp(prefix="backend-pgbouncer-"))
    pooler = Bouncer(directory, pool_size=1)
    try:
        yield pooler
    finally:
        pooler.process.terminate()
        pooler.process.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def run_pooled(script: str, env: dict[str, str]) -> str:
    result = run_python(["manage.py", "shell", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def migrate_pooled(bouncer: Bouncer, production_env: dict, name: str) -> dict:
    """Run the migrate command of a pooled deployment of `name`; return its env."""
    env = with_venv_path({**production_env, **bouncer.env(name)})
    migrate = run_python(["manage.py", "migrate_locked"], env=env, timeout=180)
    assert migrate.returncode == 0, migrate.stderr
    return env


def test_statement_timeout_cancels_a_long_query_through_pgbouncer(
    bouncer, production_env, empty_database
) -> None:
    name, _ = empty_database
    env = migrate_pooled(bouncer, production_env, name)
    # The migration and its session lock went past the pooler (DATABASE_DIRECT_URL).
    assert bouncer.server_connections(name) == 0

    # PgBouncer refuses the startup `options` that carry the timeout on a direct
    # connection; here the database role's setting, written by migrate, carries it.
    output = run_pooled(SHOW_AND_SLEEP, env)
    assert f"statement_timeout {STATEMENT_TIMEOUT_MS}\n" in output, output
    assert (
        "long query: OperationalError canceling statement due to statement timeout"
        in output
    ), output
    assert bouncer.server_connections(name) == 1


def test_readiness_probe_leaves_no_session_state_behind(
    bouncer, production_env, empty_database
) -> None:
    name, _ = empty_database
    env = migrate_pooled(bouncer, production_env, name)
    # The probe's 1 s timeout ended with its transaction: the shared server session
    # still has the role's timeout.
    output = run_pooled(PROBE_THEN_SHOW, env)
    assert f"after the probe {STATEMENT_TIMEOUT_MS}\n" in output, output


def test_deploy_check_says_when_the_pooled_timeout_is_missing(
    bouncer, production_env, empty_database
) -> None:
    name, _ = empty_database
    env = with_venv_path({**production_env, **bouncer.env(name)})
    check = ["manage.py", "check", "--deploy", "--database", "default"]
    # Tables without the migrate role's setting (a plain migrate, DB_POOL_MODE unset).
    plain = {**env, "DB_POOL_MODE": "none", "DATABASE_URL": env["DATABASE_DIRECT_URL"]}
    assert run_python(["manage.py", "migrate"], env=plain, timeout=180).returncode == 0
    before = run_python(check, env=env, timeout=120)
    assert (
        "(core.W012) statement_timeout through the pooler is 0 ms, "
        f"DB_STATEMENT_TIMEOUT_MS is {STATEMENT_TIMEOUT_MS} ms." in before.stderr
    ), before.stderr

    assert (
        run_python(["manage.py", "migrate_locked"], env=env, timeout=180).returncode
        == 0
    )
    # The server session the check used predates the setting: recycle it, as the
    # guide says (RECONNECT on the console).
    bouncer.reconnect(name)
    after = run_python(check, env=env, timeout=120)
    assert "core.W012" not in after.stderr, after.stderr
