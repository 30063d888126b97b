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
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.drill import (
    Load,
    Outcome,
    Stack,
    books,
    clients_start,
    direct,
    drill_stack,
    overdue,
    seed,
)
from tests.support.haproxy import Balancer
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


@pytest.fixture
def stack() -> Iterator[Stack]:
    with drill_stack(
        prefix="backend-scale-drill-",
        max_connections=MAX_CONNECTIONS,
        pool_size=POOL_SIZE,
        web_slots=WEB_PEAK,
        expected_replicas=WEB_PEAK + 1,
        gunicorn_workers=GUNICORN_WORKERS,
        gunicorn_threads=GUNICORN_THREADS,
    ) as built:
        yield built


def window(outcomes: list[Outcome], since: float) -> tuple[float, float] | None:
    """First and last failure (its answer) at or after `since`, relative to it."""
    failed = [o.finished - since for o in outcomes if o.finished >= since]
    return (min(failed), max(failed)) if failed else None


def in_flight(outcome: Outcome, start: float, end: float) -> bool:
    return outcome.started <= end and outcome.finished >= start


def test_scale_out_failover_and_pooler_restart_keep_the_books(stack: Stack) -> None:
    for _ in range(WEB_START):
        stack.start_web()
    for _ in range(WORKERS_START):
        stack.start_worker()
    stack.start_beat()
    balancer = Balancer(
        stack.directory,
        {f"web{i}": f"127.0.0.1:{port}" for i, port in enumerate(stack.web_ports)},
        "inter 500ms fall 2 rise 1",
    )
    try:
        for index in range(WEB_START):
            balancer.wait_status(f"web{index}", "UP", timeout=60)
        data = seed(stack, {"DRILL-1": STOCK}, CLIENTS)
        sku = data["skus"][0]

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
        load = Load(
            url=balancer.url,
            tokens=data["tokens"],
            sku=sku,
            rate=RATE,
            ttl_seconds=TTL_SECONDS,
        )
        drill_started = time.monotonic()
        clients = clients_start(load.client, CLIENTS)
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
        # A request belongs to a fault's window if it was in flight in it: one sent
        # just before PgBouncer's SIGTERM fails with it.
        failover_failures = [
            o for o in failures if in_flight(o, killed_at, killed_at + redis_back + 2)
        ]
        restart_failures = [
            o
            for o in failures
            if in_flight(o, restarted_at, restarted_at + restart_took + 10)
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
            time.sleep(TTL_SECONDS)
            try:
                wait_until(
                    lambda: overdue(cursor) == 0, 90, "every overdue reservation"
                )
            except AssertionError:
                logs = [stack.beat.output()[-4000:]] + [
                    worker.output()[-2000:] for worker in stack.workers
                ]
                raise AssertionError(
                    f"{overdue(cursor)} overdue; beat and workers said:\n"
                    + "\n---\n".join(logs)
                ) from None
            cursor.execute(
                "SELECT r.id::text FROM inventory_reservation r "
                "JOIN inventory_product p ON p.id = r.product_id WHERE p.sku = %s",
                [sku],
            )
            rows = [row[0] for row in cursor.fetchall()]
            product = books(cursor)[sku]

        report = {
            "drill_seconds": round(drill_seconds, 1),
            "requests": len(load.outcomes),
            "failed": len(failures),
            "failed_outside_windows": len(elsewhere),
            # When, after the drill's start, and what: a balancer that marked
            # replicas down says so in its log (below).
            "failed_outside_windows_at": [
                [round(o.started - drill_started, 1), o.status or o.error]
                for o in elsewhere
            ],
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
        if elsewhere:
            log = (stack.directory / "haproxy.log").read_text(errors="replace")
            print("\n".join(line for line in log.splitlines() if " is DOWN" in line))

        assert elsewhere == [], elsewhere[:5]
        assert max(sessions) <= POOL_SIZE + SAMPLER_SESSIONS, sessions
        assert redis_back <= FAILOVER_BUDGET_SECONDS
        # The books: acknowledged = rows, each once; stock = ledger; never oversold.
        assert sorted(acknowledged) == sorted(set(acknowledged))
        # A reservation whose answer was lost in a window (no Idempotency-Key here:
        # the chaos soak retries with one) may have committed all the same.
        lost_answers = [o for o in restart_failures if o.kind == "reserve"]
        assert set(acknowledged) <= set(rows)
        assert len(rows) - len(acknowledged) <= len(lost_answers)
        assert (product.on_hand, product.reserved) == (
            product.ledger_on_hand,
            product.ledger_reserved,
        )
        assert product.reserved == product.active_units == 0
        assert product.on_hand == STOCK - product.sold_units
        # Nothing was restarted: every process of the drill is the one started.
        alive = [*stack.webs, *stack.workers, stack.beat]
        assert all(p.process.poll() is None for p in alive)
    finally:
        balancer.stop()
