"""Scale drill: grow past what one database's connections allow, fail Redis over and
restart the pooler, under load, then audit the books.

Host processes, all real: a PostgreSQL of the drill's own with max_connections 40,
PgBouncer in transaction mode (a pool of 20) in front of it, a Redis primary with a
replica and three sentinels, HAProxy in front of the web replicas, gunicorn web
replicas, Celery workers and one beat, started as production starts them. Web grows
from 2 to 8 replicas and workers from 1 to 4: directly, their connections would need
8 x 2 x (4 + 2) + 4 x (1 + 1) = 104, 2.6 times the server's 40.

`make scale-drill` runs it alone and prints the figures; `make platform-test` (and so
`.ci/run`) runs it too.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.servers import (
    pgbouncer_binary,
    postgres_bindir,
    start_pgbouncer,
    start_postgres,
    stop,
)
from tests.support.env import PRODUCTION_ENV, clean_environ, with_venv_path
from tests.support.haproxy import Balancer
from tests.support.net import free_port
from tests.support.processes import (
    ServerProcess,
    kill_group,
    run_python,
    start_entrypoint,
    start_gunicorn,
    stop_group,
)
from tests.support.redis import SentinelSet
from tests.support.wait import wait_until

MAX_CONNECTIONS = 40
POOL_SIZE = 20
WEB_START, WEB_PEAK = 2, 8
WORKERS_START, WORKERS_PEAK = 1, 4
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4
CLIENTS = 8
RATE = 8  # requests per second per client
STOCK = 100_000
TTL_SECONDS = 30  # the API's shortest: reservations expire during the drill
FAILOVER_BUDGET_SECONDS = 30
# The sampler's own session is counted with the pool's.
SAMPLER_SESSIONS = 1


@dataclass
class Outcome:
    started: float
    kind: str
    status: int | None
    error: str | None = None
    reservation: str | None = None


@dataclass
class Load:
    url: str
    tokens: list[str]
    sku: str
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
                            "ttl_seconds": TTL_SECONDS,
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
            self.outcomes.append(outcome)
            time.sleep(max(0.0, 1 / RATE - (time.monotonic() - tick)))

    def failures(self) -> list[Outcome]:
        expected = {"reserve": 201, "read": 200}
        return [o for o in self.outcomes if o.status != expected[o.kind]]


@dataclass
class Stack:
    directory: Path
    postgres_port: int
    env: dict[str, str]
    sentinels: SentinelSet
    bouncer: subprocess.Popen
    bouncer_port: int
    web_ports: list[int]
    webs: list[ServerProcess] = field(default_factory=list)
    workers: list[ServerProcess] = field(default_factory=list)
    beat: ServerProcess | None = None

    def start_web(self) -> None:
        port = self.web_ports[len(self.webs)]
        self.webs.append(start_gunicorn({**self.env, "PORT": str(port)}))

    def start_worker(self) -> None:
        heartbeats = self.directory / f"worker-{len(self.workers)}"
        heartbeats.mkdir()
        self.workers.append(
            start_entrypoint(["worker"], {**self.env, "HEARTBEAT_DIR": str(heartbeats)})
        )

    def restart_bouncer(self) -> None:
        # SIGTERM: PgBouncer's immediate shutdown, every client connection cut.
        self.bouncer.send_signal(signal.SIGTERM)
        self.bouncer.wait(timeout=15)
        binary = pgbouncer_binary()
        assert binary is not None
        directory = self.directory / f"pgbouncer-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        self.bouncer, port = start_pgbouncer(
            binary,
            directory,
            postgres_port=self.postgres_port,
            pool_size=POOL_SIZE,
            port=self.bouncer_port,
        )
        assert port == self.bouncer_port


def direct(port: int, dbname: str = "drill"):
    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname=dbname
    )
    connection.autocommit = True
    return connection


@pytest.fixture
def stack() -> Iterator[Stack]:
    bindir, bouncer_binary = postgres_bindir(), pgbouncer_binary()
    missing = "the drill needs them: apt-get install postgresql pgbouncer"
    assert bindir is not None, missing
    assert bouncer_binary is not None, missing
    directory = Path(tempfile.mkdtemp(prefix="backend-scale-drill-"))
    postgres = start_postgres(bindir, directory, max_connections=MAX_CONNECTIONS)
    postgres_port = int(postgres.url.rsplit(":", 1)[1].split("/")[0])
    with direct(postgres_port, "postgres").cursor() as cursor:
        cursor.execute("CREATE DATABASE drill")
    (directory / "pgbouncer").mkdir()
    bouncer, bouncer_port = start_pgbouncer(
        bouncer_binary,
        directory / "pgbouncer",
        postgres_port=postgres_port,
        pool_size=POOL_SIZE,
    )
    (directory / "redis").mkdir()
    sentinels = SentinelSet(directory / "redis")
    env = with_venv_path(
        clean_environ(
            **PRODUCTION_ENV,
            **sentinels.env,
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{bouncer_port}/drill",
            DATABASE_DIRECT_URL=f"postgres://postgres@127.0.0.1:{postgres_port}/drill",
            DB_POOL_MODE="transaction",
            DB_POOL_SIZE=str(POOL_SIZE),
            DB_EXPECTED_REPLICAS=str(WEB_PEAK + 1),
            GUNICORN_WORKERS=str(GUNICORN_WORKERS),
            GUNICORN_THREADS=str(GUNICORN_THREADS),
            WEB_DRAIN_SECONDS="0",
            CELERY_WORKER_CONCURRENCY="1",
            # The balancer is the only client and appends the client's address.
            FORWARDED_ALLOW_IPS="127.0.0.1",
            TRUSTED_PROXY_COUNT="1",
            API_THROTTLE_USER="1000000/minute",
            RESERVATION_MAX_UNITS_PER_OWNER="1000000",
            RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR="1000000",
            WORKER_METRICS_PORT="0",
        )
    )
    migrate = run_python(
        ["manage.py", "migrate_locked"], env={**env, "APP_ROLE": "migrate"}, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr
    built = Stack(
        directory=directory,
        postgres_port=postgres_port,
        env=env,
        sentinels=sentinels,
        bouncer=bouncer,
        bouncer_port=bouncer_port,
        web_ports=[free_port() for _ in range(WEB_PEAK)],
    )
    try:
        yield built
    finally:
        for process in [*built.webs, *built.workers, built.beat]:
            if process is not None:
                stop_group(process.process, timeout=30)
                kill_group(process.process)
        built.bouncer.terminate()
        built.bouncer.wait(timeout=15)
        sentinels.stop()
        stop(postgres, signal.SIGINT)
        shutil.rmtree(directory, ignore_errors=True)


SEED = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from apps.inventory import services
User = get_user_model()
staff = User.objects.create_user("drill-staff", password="x", is_staff=True)
sku = "DRILL-1"
services.product_create(sku=sku, name="Drill", actor=staff)
services.stock_restock(sku=sku, quantity=%d, actor=staff)
tokens = [
    Token.objects.create(user=User.objects.create_user(f"buyer-{i}", password="x")).key
    for i in range(%d)
]
print(json.dumps({"sku": sku, "tokens": tokens}))
"""


def window(outcomes: list[Outcome], since: float) -> tuple[float, float] | None:
    """First and last failure at or after `since`, relative to it."""
    failed = [o.started - since for o in outcomes if o.started >= since]
    return (min(failed), max(failed)) if failed else None


def test_scale_out_failover_and_pooler_restart_keep_the_books(stack: Stack) -> None:
    for _ in range(WEB_START):
        stack.start_web()
    for _ in range(WORKERS_START):
        stack.start_worker()
    heartbeats = stack.directory / "beat"
    heartbeats.mkdir()
    stack.beat = start_entrypoint(
        ["beat"], {**stack.env, "HEARTBEAT_DIR": str(heartbeats)}
    )
    balancer = Balancer(
        stack.directory,
        {f"web{i}": f"127.0.0.1:{port}" for i, port in enumerate(stack.web_ports)},
        "inter 500ms fall 2 rise 1",
    )
    try:
        for index in range(WEB_START):
            balancer.wait_status(f"web{index}", "UP", timeout=60)
        seeded = run_python(
            ["manage.py", "shell", "-c", SEED % (STOCK, CLIENTS)], env=stack.env
        )
        assert seeded.returncode == 0, seeded.stderr
        data = json.loads(seeded.stdout.strip().splitlines()[-1])

        sessions: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            with direct(stack.postgres_port).cursor() as cursor:
                while not sampling.is_set():
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = 'drill' AND backend_type = 'client backend'"
                    )
                    sessions.append(cursor.fetchone()[0])
                    time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = Load(url=balancer.url, tokens=data["tokens"], sku=data["sku"])
        clients = [
            threading.Thread(target=load.client, args=(i,), daemon=True)
            for i in range(CLIENTS)
        ]
        drill_started = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(5)

        # Grow: web 2 -> 8, workers 1 -> 4.
        grow_started = time.monotonic()
        for _ in range(WEB_PEAK - WEB_START):
            stack.start_web()
        for _ in range(WORKERS_PEAK - WORKERS_START):
            stack.start_worker()
        for index in range(WEB_PEAK):
            balancer.wait_status(f"web{index}", "UP", timeout=120)
        grown = time.monotonic() - grow_started
        time.sleep(5)

        # Kill the Redis primary.
        replica = stack.sentinels.ports["replica"]
        killed_at = time.monotonic()
        stack.sentinels.kill("primary")
        wait_until(
            lambda: stack.sentinels.master_port() == replica,
            FAILOVER_BUDGET_SECONDS,
            "the sentinels to promote the replica",
            interval=0.1,
        )
        promoted = time.monotonic() - killed_at

        def web_sees_redis() -> bool:
            for port in stack.web_ports:
                body = requests.get(
                    f"http://127.0.0.1:{port}/health/ready/", timeout=5
                ).json()
                if body["checks"].get("redis") != "ok":
                    return False
            return True

        wait_until(web_sees_redis, FAILOVER_BUDGET_SECONDS, "every web replica's Redis")
        redis_back = time.monotonic() - killed_at
        time.sleep(5)

        # Restart PgBouncer once.
        restarted_at = time.monotonic()
        stack.restart_bouncer()
        restart_took = time.monotonic() - restarted_at
        time.sleep(10)
        load.stop.set()
        for client in clients:
            client.join(timeout=30)
        drill_seconds = time.monotonic() - drill_started
        sampling.set()
        sampler.join(timeout=5)

        failures = load.failures()
        failover_failures = [
            o for o in failures if killed_at <= o.started <= killed_at + redis_back + 2
        ]
        restart_failures = [
            o
            for o in failures
            if restarted_at <= o.started <= restarted_at + restart_took + 10
        ]
        elsewhere = [
            o
            for o in failures
            if o not in failover_failures and o not in restart_failures
        ]
        acknowledged = [o.reservation for o in load.outcomes if o.reservation]
        restart_window = window(restart_failures, restarted_at)
        failover_window = window(failover_failures, killed_at)

        # Expiries: every reservation past its deadline is released by beat's
        # schedule (every 60 s) within its next run.
        with direct(stack.postgres_port).cursor() as cursor:

            def overdue() -> int:
                cursor.execute(
                    "SELECT count(*) FROM inventory_reservation "
                    "WHERE status = 'active' AND expires_at < now()"
                )
                return cursor.fetchone()[0]

            time.sleep(TTL_SECONDS)
            try:
                wait_until(lambda: overdue() == 0, 90, "every overdue reservation")
            except AssertionError:
                logs = [stack.beat.output()[-4000:]] + [
                    worker.output()[-2000:] for worker in stack.workers
                ]
                raise AssertionError(
                    f"{overdue()} overdue; beat and workers said:\n"
                    + "\n---\n".join(logs)
                ) from None
            cursor.execute(
                "SELECT r.id::text FROM inventory_reservation r "
                "JOIN inventory_product p ON p.id = r.product_id WHERE p.sku = %s",
                [data["sku"]],
            )
            rows = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "SELECT s.on_hand, s.reserved FROM inventory_stock s "
                "JOIN inventory_product p ON p.id = s.product_id WHERE p.sku = %s",
                [data["sku"]],
            )
            on_hand, reserved = cursor.fetchone()
            cursor.execute(
                "SELECT coalesce(sum(quantity) FILTER (WHERE status = 'active'), 0), "
                "coalesce(sum(quantity) FILTER (WHERE status = 'confirmed'), 0) "
                "FROM inventory_reservation"
            )
            active_units, sold_units = cursor.fetchone()
            cursor.execute(
                "SELECT coalesce(sum(on_hand_delta), 0), "
                "coalesce(sum(reserved_delta), 0) FROM inventory_stockmovement"
            )
            ledger_on_hand, ledger_reserved = cursor.fetchone()

        report = {
            "drill_seconds": round(drill_seconds, 1),
            "requests": len(load.outcomes),
            "failed": len(failures),
            "failed_outside_windows": len(elsewhere),
            "acknowledged_reservations": len(acknowledged),
            "reservation_rows": len(rows),
            "grow_2_to_8_web_seconds": round(grown, 1),
            "postgres_sessions_max": max(sessions),
            "postgres_sessions_allowed": POOL_SIZE + SAMPLER_SESSIONS,
            "direct_connections_at_peak": WEB_PEAK
            * GUNICORN_WORKERS
            * (GUNICORN_THREADS + 2)
            + WORKERS_PEAK * 2,
            "max_connections": MAX_CONNECTIONS,
            "redis_promoted_seconds": round(promoted, 1),
            "redis_back_for_every_web_seconds": round(redis_back, 1),
            "failover_failed_requests": len(failover_failures),
            "failover_window_seconds": failover_window,
            "pgbouncer_restart_seconds": round(restart_took, 1),
            "restart_failed_requests": len(restart_failures),
            "restart_window_seconds": restart_window,
        }
        print("scale drill:", json.dumps(report, indent=2))

        assert elsewhere == [], elsewhere[:5]
        assert max(sessions) <= POOL_SIZE + SAMPLER_SESSIONS, sessions
        assert redis_back <= FAILOVER_BUDGET_SECONDS
        # The books: acknowledged = rows, each once; stock = ledger; never oversold.
        assert sorted(acknowledged) == sorted(set(acknowledged))
        assert set(acknowledged) == set(rows)
        assert (on_hand, reserved) == (ledger_on_hand, ledger_reserved)
        assert reserved == active_units == 0
        assert on_hand == STOCK - sold_units
        # Nothing was restarted: every process of the drill is the one started.
        alive = [*stack.webs, *stack.workers, stack.beat]
        assert all(p.process.poll() is None for p in alive)
    finally:
        balancer.stop()
