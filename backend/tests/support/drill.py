"""The drills' stack of host processes, their seed and their books.

Shared by the scale drill (tests/platforms/test_scale_drill.py) and the chaos soak
(tests/platforms/test_chaos.py), so that both exercise the same deployment: a
PostgreSQL of its own, PgBouncer in transaction mode in front of it, a Redis primary
with a replica and three sentinels, gunicorn web replicas (behind HAProxy, which
each test starts), Celery workers and one beat, started as production starts them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from tests.support.env import PRODUCTION_ENV, clean_environ, with_venv_path
from tests.support.net import free_port
from tests.support.processes import (
    ServerProcess,
    kill_group,
    run_python,
    start_entrypoint,
    start_gunicorn,
)
from tests.support.redis import SentinelSet
from tests.support.servers import (
    Server,
    pgbouncer_binary,
    postgres_bindir,
    start_pgbouncer,
    start_postgres,
    stop,
)

DATABASE = "drill"


@dataclass
class Outcome:
    started: float
    kind: str
    status: int | None
    error: str | None = None
    reservation: str | None = None
    finished: float = 0.0


@dataclass
class Load:
    """The scale drill's load: each client alternates a read and a reservation."""

    url: str
    tokens: list[str]
    sku: str
    rate: float  # requests per second per client
    ttl_seconds: int
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens[index]}"
        step = 0
        while not self.stop.is_set():
            step += 1
            tick = time.monotonic()
            reserve = step % 2 == 0
            outcome = Outcome(
                started=tick, kind="reserve" if reserve else "read", status=None
            )
            try:
                if reserve:
                    response = session.post(
                        f"{self.url}/api/v1/reservations/",
                        json={
                            "sku": self.sku,
                            "quantity": 1,
                            "ttl_seconds": self.ttl_seconds,
                        },
                        timeout=10,
                    )
                    if response.status_code == 201:
                        outcome.reservation = response.json()["id"]
                else:
                    response = session.get(
                        f"{self.url}/api/v1/products/{self.sku}/", timeout=10
                    )
                outcome.status = response.status_code
            except (requests.RequestException, ValueError) as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.finished = time.monotonic()
            self.outcomes.append(outcome)
            time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - tick)))

    def failures(self) -> list[Outcome]:
        expected = {"reserve": 201, "read": 200}
        return [o for o in self.outcomes if o.status != expected[o.kind]]


def direct(port: int, dbname: str = DATABASE):
    """An autocommit session straight to the drill's PostgreSQL (not the pooler)."""
    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname=dbname, connect_timeout=10
    )
    connection.autocommit = True
    return connection


@dataclass
class Stack:
    directory: Path
    postgres: Server
    postgres_port: int
    env: dict[str, str]
    sentinels: SentinelSet
    bouncer: subprocess.Popen
    bouncer_port: int
    pool_size: int
    web_ports: list[int]
    webs: list[ServerProcess] = field(default_factory=list)
    workers: list[ServerProcess] = field(default_factory=list)
    beat: ServerProcess | None = None
    # Each worker's HEARTBEAT_DIR, by pid: its canaries' record of consuming.
    heartbeat_dirs: dict[int, Path] = field(default_factory=dict)
    # PgBouncer is started with PR_SET_PDEATHSIG (tests/support/servers.py), which
    # fires when the *thread* that started it ends: a restart from a short-lived
    # thread (the chaos soak's faults) would see it SIGTERMed at once. This thread
    # lives as long as the stack.
    spawner: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="spawner")
    )

    def _heartbeats(self, name: str) -> Path:
        # A directory per start: a restarted process never reads its predecessor's.
        directory = self.directory / f"{name}-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        return directory

    def web_process(self, slot: int) -> ServerProcess:
        """Start a web replica on slot `slot`'s port (returned, not recorded)."""
        return start_gunicorn({**self.env, "PORT": str(self.web_ports[slot])})

    def worker_process(self, **env: str) -> ServerProcess:
        """Start a worker, with `env` over the stack's (returned, not recorded)."""
        heartbeats = self._heartbeats("worker")
        worker = start_entrypoint(
            ["worker"], {**self.env, "HEARTBEAT_DIR": str(heartbeats), **env}
        )
        self.heartbeat_dirs[worker.process.pid] = heartbeats
        return worker

    def beat_process(self) -> ServerProcess:
        heartbeats = self._heartbeats("beat")
        return start_entrypoint(
            ["beat"], {**self.env, "HEARTBEAT_DIR": str(heartbeats)}
        )

    def start_web(self) -> None:
        self.webs.append(self.web_process(len(self.webs)))

    def start_worker(self, **env: str) -> None:
        self.workers.append(self.worker_process(**env))

    def start_beat(self) -> None:
        self.beat = self.beat_process()

    def postmaster_pid(self) -> int:
        return self.postgres.process.pid

    def restart_bouncer(self) -> None:
        # SIGTERM: PgBouncer's immediate shutdown, every client connection cut.
        self.bouncer.send_signal(signal.SIGTERM)
        self.bouncer.wait(timeout=15)
        binary = pgbouncer_binary()
        assert binary is not None
        directory = self.directory / f"pgbouncer-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        self.bouncer, port = self.spawner.submit(
            start_pgbouncer,
            binary,
            directory,
            postgres_port=self.postgres_port,
            pool_size=self.pool_size,
            port=self.bouncer_port,
        ).result()
        assert port == self.bouncer_port

    def processes(self) -> list[ServerProcess]:
        return [p for p in [*self.webs, *self.workers, self.beat] if p]


def _stop_all(processes: list[ServerProcess], timeout: float = 30) -> None:
    """SIGTERM every process group at once, then SIGKILL what outlives `timeout`."""
    for server in processes:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for server in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        kill_group(server.process)


@contextlib.contextmanager
def drill_stack(
    *,
    prefix: str,
    max_connections: int,
    pool_size: int,
    web_slots: int,
    expected_replicas: int,
    gunicorn_workers: int,
    gunicorn_threads: int,
    **env: str,
) -> Iterator[Stack]:
    """Start PostgreSQL, PgBouncer and the Sentinel set, migrate; yield the stack
    (web, workers and beat are the test's to start); stop everything afterwards.

    `env` adds to (or overrides) the environment every role gets.
    """
    bindir, bouncer_binary = postgres_bindir(), pgbouncer_binary()
    missing = "the drill needs them: apt-get install postgresql pgbouncer"
    assert bindir is not None, missing
    assert bouncer_binary is not None, missing
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    postgres = start_postgres(bindir, directory, max_connections=max_connections)
    sentinels: SentinelSet | None = None
    built: Stack | None = None
    try:
        postgres_port = int(postgres.url.rsplit(":", 1)[1].split("/")[0])
        with direct(postgres_port, "postgres").cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        (directory / "pgbouncer").mkdir()
        bouncer, bouncer_port = start_pgbouncer(
            bouncer_binary,
            directory / "pgbouncer",
            postgres_port=postgres_port,
            pool_size=pool_size,
        )
        (directory / "redis").mkdir()
        sentinels = SentinelSet(directory / "redis")
        environ = with_venv_path(
            clean_environ(
                **PRODUCTION_ENV,
                **sentinels.env,
                DATABASE_URL=f"postgres://postgres@127.0.0.1:{bouncer_port}/{DATABASE}",
                DATABASE_DIRECT_URL=(
                    f"postgres://postgres@127.0.0.1:{postgres_port}/{DATABASE}"
                ),
                DB_POOL_MODE="transaction",
                DB_POOL_SIZE=str(pool_size),
                DB_EXPECTED_REPLICAS=str(expected_replicas),
                GUNICORN_WORKERS=str(gunicorn_workers),
                GUNICORN_THREADS=str(gunicorn_threads),
                WEB_DRAIN_SECONDS="0",
                CELERY_WORKER_CONCURRENCY="1",
                # The balancer is the only client and appends the client's address.
                FORWARDED_ALLOW_IPS="127.0.0.1",
                TRUSTED_PROXY_COUNT="1",
                API_THROTTLE_USER="1000000/minute",
                RESERVATION_MAX_UNITS_PER_OWNER="1000000",
                RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR="1000000",
                WORKER_METRICS_PORT="0",
                **env,
            )
        )
        migrate = run_python(
            ["manage.py", "migrate_locked"],
            env={**environ, "APP_ROLE": "migrate"},
            timeout=300,
        )
        assert migrate.returncode == 0, migrate.stderr
        built = Stack(
            directory=directory,
            postgres=postgres,
            postgres_port=postgres_port,
            env=environ,
            sentinels=sentinels,
            bouncer=bouncer,
            bouncer_port=bouncer_port,
            pool_size=pool_size,
            web_ports=[free_port() for _ in range(web_slots)],
        )
        yield built
    finally:
        if built is not None:
            _stop_all(built.processes())
            built.bouncer.terminate()
            built.bouncer.wait(timeout=15)
            built.spawner.shutdown()
        if sentinels is not None:
            sentinels.stop()
        stop(postgres, signal.SIGINT)
        shutil.rmtree(directory, ignore_errors=True)


SEED = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from apps.inventory import services
User = get_user_model()
staff = User.objects.create_user("drill-staff", password="x", is_staff=True)
products = json.loads(%r)
for sku, stock in products.items():
    services.product_create(sku=sku, name=sku.title())
    services.stock_restock(sku=sku, quantity=stock, actor=staff)
tokens = [
    Token.objects.create(user=User.objects.create_user(f"buyer-{i}", password="x")).key
    for i in range(%d)
]
# The storefront's backend: it sells (confirms) with the permission, not as staff.
storefront = User.objects.create_user("storefront", password="x")
storefront.user_permissions.add(
    Permission.objects.get(codename="confirm_reservation")
)
print(json.dumps({
    "skus": list(products),
    "tokens": tokens,
    "storefront": Token.objects.create(user=storefront).key,
}))
"""


def seed(stack: Stack, products: dict[str, int], clients: int) -> dict:
    """Create products with their stock, a buyer token per client and a storefront
    token (inventory.confirm_reservation); return {skus, tokens, storefront}."""
    seeded = run_python(
        ["manage.py", "shell", "-c", SEED % (json.dumps(products), clients)],
        env=stack.env,
    )
    assert seeded.returncode == 0, seeded.stderr
    return json.loads(seeded.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Books:
    """One product's numbers, from its stock row, its reservations and its ledger."""

    sku: str
    on_hand: int
    reserved: int
    ledger_on_hand: int
    ledger_reserved: int
    restocked: int
    active_units: int
    sold_units: int


BOOKS_QUERY = """
SELECT p.sku, s.on_hand, s.reserved,
  (SELECT coalesce(sum(m.on_hand_delta), 0) FROM inventory_stockmovement m
    WHERE m.product_id = p.id),
  (SELECT coalesce(sum(m.reserved_delta), 0) FROM inventory_stockmovement m
    WHERE m.product_id = p.id),
  (SELECT coalesce(sum(m.quantity), 0) FROM inventory_stockmovement m
    WHERE m.product_id = p.id AND m.kind = 'restock'),
  (SELECT coalesce(sum(r.quantity), 0) FROM inventory_reservation r
    WHERE r.product_id = p.id AND r.status = 'active'),
  (SELECT coalesce(sum(r.quantity), 0) FROM inventory_reservation r
    WHERE r.product_id = p.id AND r.status = 'confirmed')
FROM inventory_product p JOIN inventory_stock s ON s.product_id = p.id
ORDER BY p.sku
"""


def books(cursor) -> dict[str, Books]:
    """Every product's books, by SKU."""
    cursor.execute(BOOKS_QUERY)
    return {row[0]: Books(*row) for row in cursor.fetchall()}


def overdue(cursor) -> int:
    """Active reservations past their deadline, by the database's clock."""
    cursor.execute(
        "SELECT count(*) FROM inventory_reservation "
        "WHERE status = 'active' AND expires_at < now()"
    )
    return cursor.fetchone()[0]


def clients_start(client: Callable[[int], None], count: int) -> list[threading.Thread]:
    """Start `count` load clients, `client(index)` each on a daemon thread."""
    threads = [
        threading.Thread(target=client, args=(index,), daemon=True)
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads
