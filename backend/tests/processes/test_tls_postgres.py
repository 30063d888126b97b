"""PostgreSQL over verified TLS (`sslmode=verify-full`), as a managed database
(RDS, Cloud SQL, Azure) should be reached.

A cluster of the test's own that accepts TLS only (`hostssl` lines only), a
throwaway CA and a server certificate for `localhost`, and DATABASE_URL exactly as
the guide writes it: `?sslmode=verify-full&sslrootcert=<the CA's file>`. Every role
runs as a real process through the entrypoint; a private redis-server keeps
beat's lock and the queue to this test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import requests
from celery import Celery

from tests.support.net import free_port
from tests.support.postgres import TlsPostgres
from tests.support.processes import WORKER_COMMAND, assert_exit, run_python
from tests.support.redis import start_redis, stop_redis
from tests.support.tls import TlsFiles, throwaway_ca
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

DATABASE = "inventory_tls"
HTTPS = {"Host": "localhost", "X-Forwarded-Proto": "https"}


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory) -> Iterator[tuple[TlsPostgres, TlsFiles]]:
    tls = throwaway_ca(tmp_path_factory.mktemp("postgres-tls"))
    server = TlsPostgres(tls)
    admin = server.admin()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    admin.close()
    yield server, tls
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = start_redis(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(process)


def _connect(server: TlsPostgres, **options: str):
    return psycopg2.connect(
        host="localhost",
        port=server.port,
        user="postgres",
        dbname=DATABASE,
        connect_timeout=5,
        **options,
    )


def test_plain_connections_are_refused(tls_postgres) -> None:
    server, tls = tls_postgres
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        _connect(server, sslmode="disable")
    # The same server over verified TLS: the refusal was TLS's absence, not the path.
    connection = _connect(server, sslmode="verify-full", sslrootcert=str(tls.ca))
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cursor.fetchone() == (True,)
    connection.close()


def test_wrong_ca_fails_naming_the_problem(
    tls_postgres, start_entrypoint, tmp_path: Path
) -> None:
    """A CA that did not sign the server's certificate: the entrypoint gives up
    and says why, in the words an operator searches for."""
    server, _ = tls_postgres
    other = throwaway_ca(tmp_path / "another-ca")
    migrate = start_entrypoint(
        "migrate",
        **direct(server.url(DATABASE, ca=other.ca)),
        DEPENDENCY_WAIT_TIMEOUT="2",
    )
    assert_exit(
        migrate,
        1,
        timeout=60,
        says=[
            "dependency wait timed out after 2s (DEPENDENCY_WAIT_TIMEOUT): "
            "PostgreSQL unreachable",
            "certificate verify failed",
        ],
    )


def direct(url: str) -> dict[str, str]:
    """Every role straight to the TLS server, also in the pooled lane (whose
    environment would send the migrate role past it, to the run's own server)."""
    return {"DATABASE_URL": url, "DB_POOL_MODE": "none", "DATABASE_DIRECT_URL": url}


SEED = """
from rest_framework.authtoken.models import Token
from tests.support import factories
staff = factories.user_create(staff=True)
product = factories.product_create(actor=staff, on_hand=10)
owner = factories.user_create()
overdue = factories.reservation_expired(owner=owner, product=product, quantity=2,
                                        number=7)
print("SEED", Token.objects.create(user=owner).key, product.sku, overdue.pk)
"""


def test_every_role_runs_over_verified_tls(
    tls_postgres, private_redis, start_entrypoint, production_env
) -> None:
    server, tls = tls_postgres
    env = {**direct(server.url(DATABASE, ca=tls.ca)), "REDIS_URL": private_redis}
    queue = f"tls-pg-{uuid.uuid4().hex[:8]}"

    migrate = start_entrypoint("migrate", **env)
    assert_exit(migrate, 0, timeout=180, says=["migrations applied; exiting"])

    seeded = run_python(["manage.py", "shell", "-c", SEED], {**production_env, **env})
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    (seed_line,) = [line for line in seeded.stdout.splitlines() if line[:5] == "SEED "]
    _, token, sku, overdue = seed_line.split()

    port = free_port()
    web = start_entrypoint("web", PORT=str(port), **env)
    web.wait_for_line(lambda line: "Listening at" in line, 90)
    ready = requests.get(f"{web.base_url}/health/ready/", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok", ready.text

    reserved = requests.post(
        f"{web.base_url}/api/v1/reservations/",
        json={"sku": sku, "quantity": 3},
        headers={"Authorization": f"Token {token}", **HTTPS},
        timeout=10,
    )
    assert reserved.status_code == 201, reserved.text

    # Beat schedules onto the test's queue (its first CELERY_WORKER_QUEUES entry):
    # its Redis-server check, due at start, reconciles on the worker from the stock
    # rows, over TLS.
    worker = start_entrypoint(
        "worker",
        *WORKER_COMMAND,
        CELERY_WORKER_QUEUES=queue,
        CELERY_WORKER_CONCURRENCY="1",
        **env,
    )
    worker.wait_for_line(lambda line: "ready." in line, 90)
    beat = start_entrypoint("beat", CELERY_WORKER_QUEUES=queue, **env)
    beat.wait_for_line(lambda line: "Sending due task" in line, 90)
    worker.wait_for_line(
        lambda line: "inventory.gate_check_server" in line and "succeeded" in line,
        60,
    )
    # The expiry sweep (beat sends it every minute) as a task on that worker.
    sender = Celery(broker=private_redis, set_as_current=False)
    sender.send_task("inventory.expire_reservations", queue=queue)

    def status_of_overdue() -> str:
        connection = psycopg2.connect(
            host=str(server.base), port=server.port, user="postgres", dbname=DATABASE
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT status FROM inventory_reservation WHERE id = %s",
                    [overdue],
                )
                return cursor.fetchone()[0]
        finally:
            connection.close()

    wait_until(lambda: status_of_overdue() == "expired", 60, "the expiry task")

    # Every session the roles opened to this server is encrypted (the Unix socket
    # of this query aside).
    admin = server.admin()
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a"
            " JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.datname = %s AND a.client_addr IS NOT NULL",
            [DATABASE],
        )
        sessions = cursor.fetchall()
    admin.close()
    assert sessions, "the roles keep connections open"
    assert {ssl for _, ssl in sessions} == {True}, sessions
    for process in (web, worker, beat):
        assert process.process.poll() is None, process.output()
        assert "Traceback" not in process.output(), process.output()
