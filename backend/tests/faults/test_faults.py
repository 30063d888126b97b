"""Fault injection: Redis dies, PostgreSQL drops away, a worker is killed mid-batch.

The machine's shared PostgreSQL and Redis are never stopped: the tests start their own
redis-server, or put a TCP proxy in front of PostgreSQL, and cut that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db.models import Sum
from django.utils import timezone

from apps.inventory.gate import gate_key
from apps.inventory.models import Reservation, Stock, StockMovement
from tests.support.environment import database_port
from tests.support.net import free_port
from tests.support.postgres import database_name, raw_connection
from tests.support.processes import run_python
from tests.support.redis import start_redis
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
HTTPS = {"X-Forwarded-Proto": "https"}


def ledger_matches(product) -> tuple[int, int]:
    stock = Stock.objects.get(product=product)
    sums = StockMovement.objects.filter(product=product).aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    assert (sums["on_hand"], sums["reserved"]) == (stock.on_hand, stock.reserved)
    return stock.on_hand, stock.reserved


def test_redis_dies_during_load_and_comes_back(
    start_gunicorn, make_product, make_user, tmp_path, production_env
) -> None:
    from rest_framework.authtoken.models import Token

    port = free_port()
    redis_server = start_redis(port, tmp_path)
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        product = make_product(on_hand=200)
        tokens = [Token.objects.create(user=make_user()).key for _ in range(8)]
        server = start_gunicorn(GUNICORN_WORKERS="2", REDIS_URL=redis_url)
        base = server.base_url
        statuses: Counter = Counter()
        read_statuses: Counter = Counter()
        readiness: list[str] = []

        def reserve(i: int) -> None:
            response = requests.post(
                f"{base}/api/v1/reservations/",
                json={"sku": product.sku, "quantity": 1},
                headers={"Authorization": f"Token {tokens[i % 8]}", **HTTPS},
                timeout=10,
            )
            statuses[response.status_code] += 1
            read = requests.get(
                f"{base}/api/v1/products/{product.sku}/",
                headers={"Authorization": f"Token {tokens[i % 8]}", **HTTPS},
                timeout=10,
            )
            read_statuses[read.status_code] += 1

        with ThreadPoolExecutor(16) as pool:
            first = list(pool.map(reserve, range(100)))
            redis_server.kill()
            redis_server.wait()
            readiness.append(
                requests.get(f"{base}/health/ready/", timeout=5).json()["status"]
            )
            second = list(pool.map(reserve, range(100, 300)))
        assert len(first) + len(second) == 300
        assert readiness == ["degraded"]
        assert read_statuses == Counter({200: 300})
        assert statuses == Counter({201: 200, 409: 100})
        assert ledger_matches(product) == (200, 200)

        # Redis returns empty: the gate is warmed from the database and used again.
        redis_server = start_redis(port, tmp_path)
        time.sleep(5.5)  # the per-process circuit breaker re-closes after 5 s
        restock = run_python(
            [
                "manage.py",
                "shell",
                "-c",
                "from apps.inventory.services import stock_restock;"
                f"stock_restock(sku='{product.sku}', quantity=10, actor=None)",
            ],
            env={**production_env, "REDIS_URL": redis_url},
        )
        assert restock.returncode == 0, restock.stderr
        response = requests.post(
            f"{base}/api/v1/reservations/",
            json={"sku": product.sku, "quantity": 1},
            headers={"Authorization": f"Token {tokens[0]}", **HTTPS},
            timeout=10,
        )
        assert response.status_code == 201
        import redis

        counter = redis.Redis(port=port).get(gate_key(product.sku))
        assert int(counter) == 9  # warmed from the database (10), then taken (1)
        reconcile = run_python(
            [
                "manage.py",
                "shell",
                "-c",
                "from apps.inventory.tasks import reconcile_inventory_redis_db as r;"
                "print(r())",
            ],
            env={**production_env, "REDIS_URL": redis_url},
        )
        assert reconcile.stdout.strip().splitlines()[-1] == "0", reconcile.stderr
    finally:
        redis_server.kill()
        redis_server.wait()


def test_postgres_unreachable_then_recovers(
    start_gunicorn, make_product, make_user, client_for
) -> None:
    from rest_framework.authtoken.models import Token

    product = make_product(on_hand=50)
    user = make_user()
    token = Token.objects.create(user=user).key
    headers = {"Authorization": f"Token {token}", **HTTPS}
    confirmed = []
    api = client_for(user)
    confirmer = client_for(make_user(staff=True))
    for _ in range(5):
        created = api.post(
            "/api/v1/reservations/", {"sku": product.sku, "quantity": 2}, format="json"
        ).json()
        confirmer.post(f"/api/v1/reservations/{created['id']}/confirm/")
        confirmed.append(created["id"])

    proxy = TcpProxy(target_port=database_port()).start()
    proxy_port = proxy.listen_port
    server = start_gunicorn(
        GUNICORN_WORKERS="2",
        DATABASE_URL=(f"postgres://postgres@127.0.0.1:{proxy_port}/{database_name()}"),
        DB_CONNECT_TIMEOUT="2",
    )
    url = f"{server.base_url}/api/v1/products/{product.sku}/"
    assert requests.get(url, headers=headers, timeout=5).status_code == 200

    proxy.stop()
    outage = [requests.get(url, headers=headers, timeout=5) for _ in range(6)]
    assert [r.status_code for r in outage] == [503] * 6
    body = outage[-1].json()
    assert body["error"]["code"] == "service_unavailable"
    assert "Traceback" not in outage[-1].text
    ready = requests.get(f"{server.base_url}/health/ready/", timeout=5)
    assert ready.status_code == 503

    proxy = TcpProxy(target_port=database_port(), listen_port=proxy_port).start()
    try:
        recovered_at = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if requests.get(url, headers=headers, timeout=5).status_code == 200:
                recovered_at = time.monotonic()
                break
            time.sleep(0.2)
        assert recovered_at is not None, "did not recover within 10 s"
        # Each process reuses its readiness result for a second: poll like a balancer.
        wait_until(
            lambda: (
                requests.get(f"{server.base_url}/health/ready/", timeout=5).status_code
                == 200
            ),
            timeout=10,
            what="readiness after the database came back",
        )
    finally:
        proxy.stop()
    statuses = set(
        Reservation.objects.filter(pk__in=confirmed).values_list("status", flat=True)
    )
    assert statuses == {"confirmed"}
    assert ledger_matches(product) == (40, 0)


def test_worker_killed_mid_expiry_batch_releases_each_once(
    start_entrypoint, make_product, make_user, production_env
) -> None:
    from apps.inventory import services

    product = make_product(on_hand=300)
    user = make_user()
    ids = [
        services.reservation_create(
            owner=user, sku=product.sku, quantity=1
        ).reservation.pk
        for _ in range(120)
    ]
    Reservation.objects.filter(pk__in=ids).update(
        expires_at=timezone.now() - timedelta(seconds=5)
    )
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = start_entrypoint(
        "worker", CELERY_WORKER_QUEUES=queue, CELERY_WORKER_CONCURRENCY="1"
    )
    worker.wait_for_line(lambda line: "ready." in line, timeout=60)

    # Hold the stock row: the expiry batch blocks inside its transaction, mid-batch.
    blocker = raw_connection()
    with blocker.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM inventory_stock WHERE product_id = %s FOR UPDATE",
            [product.pk],
        )
    from config.celery import app

    app.send_task("inventory.expire_reservations", queue=queue)
    watcher = raw_connection()
    watcher.autocommit = True

    def waiting_backend() -> int | None:
        with watcher.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = "
                "'backend-worker' AND wait_event_type = 'Lock'"
            )
            row = cursor.fetchone()
        return row[0] if row else None

    wait_until(waiting_backend, 30, "the expiry batch to block mid-transaction")
    backend_pid = waiting_backend()
    children = subprocess.run(
        ["pgrep", "-P", str(_celery_main_pid(worker))],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert children, "no pool process found"
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    # PostgreSQL notices the dead client when it next talks to it; make it now.
    with watcher.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
    blocker.rollback()
    blocker.close()
    # The killed batch is redelivered at once (reject_on_worker_lost); the next beat
    # run is simulated too, so nothing depends on which of them finds the rows.
    time.sleep(1)
    app.send_task("inventory.expire_reservations", queue=queue)

    def all_released() -> bool:
        return not Reservation.objects.filter(pk__in=ids, status="active").exists()

    wait_until(all_released, 60, "every reservation released")
    time.sleep(1)
    expire_rows = StockMovement.objects.filter(product=product, kind="expire")
    assert expire_rows.count() == 120
    assert expire_rows.values("reservation").distinct().count() == 120
    assert ledger_matches(product) == (300, 0)
    watcher.close()


def _celery_main_pid(worker) -> int:
    # The entrypoint exec'd celery in the process the test started.
    return worker.process.pid
