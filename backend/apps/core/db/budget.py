"""PostgreSQL connection budget: what one container of a role may hold at once.

Each gthread thread keeps its own persistent connection (CONN_MAX_AGE), and each
readiness round opens up to two more per worker process (the database and
migration checks run in pool threads); each Celery pool process keeps one, and the
worker's main process one more. Times DB_EXPECTED_REPLICAS, that must fit in the
server's max_connections minus DB_RESERVED_CONNECTIONS, or replicas get
"FATAL: sorry, too many clients already" under load (measured: an ASGI setup with
persistent connections hit it within seconds).

Through a transaction pooler (DB_POOL_MODE=transaction) those are client
connections to the pooler: they must fit in what it accepts (DB_POOL_MAX_CLIENTS),
and PostgreSQL sees only the pool (DB_POOL_SIZE), however many replicas there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

from runtime.cpus import worker_count
from runtime.env import Config

# Readiness checks per gunicorn worker process that hold a connection at once.
READINESS_CONNECTIONS = 2
# The Celery worker's main process (consumer, signal handlers) besides its pool.
CELERY_MAIN_CONNECTIONS = 1


@dataclass(frozen=True)
class ConnectionBudget:
    role: str
    per_container: int
    formula: str
    replicas: int
    server_max: int
    reserved: int
    # Set through a transaction pooler: its server pool and its client limit.
    pool_size: int | None = None
    pool_max_clients: int | None = None

    @property
    def pooled(self) -> bool:
        return self.pool_size is not None

    @property
    def needed(self) -> int:
        """Connections the replicas open: to PostgreSQL, or to the pooler."""
        return self.per_container * self.replicas

    @property
    def available(self) -> int:
        return self.server_max - self.reserved

    @property
    def exceeded(self) -> bool:
        if self.pool_size is not None and self.pool_max_clients is not None:
            return (
                self.needed > self.pool_max_clients or self.pool_size > self.available
            )
        return self.needed > self.available

    POOLED_REMEDY = (
        "Raise the pooler's max_client_conn with DB_POOL_MAX_CLIENTS, or lower "
        "DB_EXPECTED_REPLICAS; keep its pool (DB_POOL_SIZE) within max_connections"
    )

    def describe(self) -> str:
        """Say what was counted and against what, naming the variables."""
        verdict = "over budget" if self.exceeded else "within budget"
        if self.pooled:
            return (
                f"{self.role}: {self.per_container} pooler client connections per "
                f"container ({self.formula}) x DB_EXPECTED_REPLICAS ({self.replicas}) "
                f"= {self.needed}, of DB_POOL_MAX_CLIENTS ({self.pool_max_clients}); "
                f"the pooler opens at most DB_POOL_SIZE ({self.pool_size}) PostgreSQL "
                f"connections, and the server allows max_connections "
                f"({self.server_max}) - DB_RESERVED_CONNECTIONS ({self.reserved}) = "
                f"{self.available}: {verdict}"
            )
        return (
            f"{self.role}: {self.per_container} PostgreSQL connections per container "
            f"({self.formula}) x DB_EXPECTED_REPLICAS ({self.replicas}) = "
            f"{self.needed}; the server allows max_connections ({self.server_max}) - "
            f"DB_RESERVED_CONNECTIONS ({self.reserved}) = {self.available}: {verdict}"
        )


def connections_per_container(*, role: str, env: Config) -> tuple[int, str] | None:
    """Return the most connections one container of `role` holds, and the formula.

    None for roles without a steady pool (beat, migrate: one short-lived
    connection each, covered by DB_RESERVED_CONNECTIONS) and for the ASGI worker,
    whose connections last one request (CONN_MAX_AGE=0) and are bounded by
    concurrent requests, not by configuration.
    """
    if role == "web":
        if env["GUNICORN_WORKER_CLASS"] != "gthread":
            return None
        workers = worker_count(
            configured=env["GUNICORN_WORKERS"], maximum=env["GUNICORN_MAX_WORKERS"]
        )
        threads = env["GUNICORN_THREADS"]
        return (
            workers * (threads + READINESS_CONNECTIONS),
            f"GUNICORN_WORKERS {workers} x (GUNICORN_THREADS {threads} + "
            f"{READINESS_CONNECTIONS} readiness)",
        )
    if role == "worker":
        concurrency = env["CELERY_WORKER_CONCURRENCY"]
        return (
            concurrency + CELERY_MAIN_CONNECTIONS,
            f"CELERY_WORKER_CONCURRENCY {concurrency} + "
            f"{CELERY_MAIN_CONNECTIONS} main process",
        )
    return None


def connection_budget_compute(
    *, role: str, env: Config, using: str = "default"
) -> ConnectionBudget | None:
    """Compare the role's connections at `env`'s replica count with the server's."""
    per = connections_per_container(role=role, env=env)
    connection = connections[using]
    if per is None or connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        (server_max,) = cursor.fetchone()
    pooled = env["DB_POOL_MODE"] == "transaction"
    return ConnectionBudget(
        role=role,
        per_container=per[0],
        formula=per[1],
        replicas=env["DB_EXPECTED_REPLICAS"],
        server_max=int(server_max),
        reserved=env["DB_RESERVED_CONNECTIONS"],
        pool_size=env["DB_POOL_SIZE"] if pooled else None,
        pool_max_clients=env["DB_POOL_MAX_CLIENTS"] if pooled else None,
    )
