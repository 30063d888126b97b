"""Flash sale through the real HTTP stack: never oversell, whatever Redis does."""

from __future__ import annotations

import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum

from apps.inventory import gate
from apps.inventory.models import Reservation, Stock, StockMovement
from tests.support.gate import gate_counter_corrupt
from tests.support.net import free_port
from tests.support.redis import start_redis
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

STOCK = 100
ATTEMPTS = 300
CLIENT_THREADS = 50
READY = {"database": "ok", "migrations": "ok", "redis": "ok"}


def tokens_for(make_user, count: int) -> list[str]:
    from rest_framework.authtoken.models import Token

    return [Token.objects.create(user=make_user()).key for _ in range(count)]


def flash_sale(base_url: str, sku: str, tokens: list[str]) -> Counter:
    def attempt(i: int) -> int:
        response = requests.post(
            f"{base_url}/api/v1/reservations/",
            json={"sku": sku, "quantity": 1},
            headers={
                "Authorization": f"Token {tokens[i % len(tokens)]}",
                "X-Forwarded-Proto": "https",
            },
            timeout=60,
        )
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "insufficient_stock"
        return response.status_code

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return Counter(pool.map(attempt, range(ATTEMPTS)))


def assert_no_oversell(product) -> None:
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (STOCK, STOCK)
    assert Reservation.objects.filter(product=product, status="active").count() == STOCK
    sums = StockMovement.objects.filter(product=product).aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    assert (sums["on_hand"], sums["reserved"]) == (STOCK, STOCK)


def test_flash_sale_with_the_gate(start_gunicorn, make_product, make_user) -> None:
    product = make_product(on_hand=STOCK)
    tokens = tokens_for(make_user, 10)
    server = start_gunicorn(GUNICORN_WORKERS="3")
    outcome = flash_sale(server.base_url, product.sku, tokens)
    assert outcome == Counter({201: STOCK, 409: ATTEMPTS - STOCK})
    assert_no_oversell(product)
    assert gate.gate_read(sku=product.sku) == 0


def test_flash_sale_with_a_counter_too_high(
    start_gunicorn, make_product, make_user
) -> None:
    product = make_product(on_hand=STOCK)
    gate_counter_corrupt(sku=product.sku, expected=STOCK, value=1000)
    tokens = tokens_for(make_user, 10)
    server = start_gunicorn(GUNICORN_WORKERS="3")
    outcome = flash_sale(server.base_url, product.sku, tokens)
    assert outcome == Counter({201: STOCK, 409: ATTEMPTS - STOCK})
    assert_no_oversell(product)
    # Every unit the database refused went back to the (wrong) counter.
    assert gate.gate_read(sku=product.sku) == 1000 - STOCK


def test_flash_sale_with_redis_stopped(
    start_gunicorn, make_product, make_user, tmp_path
) -> None:
    product = make_product(on_hand=STOCK)
    tokens = tokens_for(make_user, 10)
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    try:
        server = start_gunicorn(
            GUNICORN_WORKERS="3", REDIS_URL=f"redis://127.0.0.1:{port}/0"
        )
        ready = requests.get(server.base_url + "/health/ready/", timeout=5)
        assert ready.json()["status"] == "ok"
    finally:
        os.kill(redis_server.pid, signal.SIGKILL)
        redis_server.wait()
    # Each process reuses its readiness result for a second: poll like a balancer.
    wait_until(
        lambda: (
            requests.get(server.base_url + "/health/ready/", timeout=5).json()
            == {"status": "degraded", "checks": {**READY, "redis": "failed"}}
        ),
        timeout=10,
        what="readiness to report Redis down",
    )
    outcome = flash_sale(server.base_url, product.sku, tokens)
    assert outcome == Counter({201: STOCK, 409: ATTEMPTS - STOCK})
    assert_no_oversell(product)
