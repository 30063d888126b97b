"""A client's retry racing its own first request, through gunicorn.

The test holds the product's stock row locked, so the first request stops inside
its transaction after taking the last unit from the gate; the retry is sent while
it waits there. Progress is read from PostgreSQL's lock table, not from sleeps.
"""

from __future__ import annotations

import threading

import pytest
import requests
from django.db import transaction

from apps.inventory import gate
from apps.inventory.models import Reservation, Stock
from tests.support.postgres import blocked_backends
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
HTTPS = {"X-Forwarded-Proto": "https"}


class Call(threading.Thread):
    """One HTTP request on its own thread; the response is kept."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.url, self.kwargs = url, kwargs
        self.response: requests.Response | None = None

    def run(self) -> None:
        self.response = requests.post(self.url, timeout=60, **self.kwargs)


@pytest.fixture
def last_unit(make_product, make_user, start_gunicorn):
    from rest_framework.authtoken.models import Token

    product = make_product(on_hand=1)
    token = Token.objects.create(user=make_user()).key
    server = start_gunicorn()
    return server, product, {"Authorization": f"Token {token}", **HTTPS}


def race(server, product, headers, first_body, retry_body):
    """Send the first request, hold it after its gate take, send the retry."""
    url = f"{server.base_url}/api/v1/reservations/"
    key = {"Idempotency-Key": "order-7"}
    with transaction.atomic():
        Stock.objects.select_for_update().get(product=product)
        first = Call(url, json=first_body, headers={**headers, **key})
        first.start()
        wait_until(lambda: blocked_backends() == 1, 30, "the first request to wait")
        assert gate.gate_read(sku=product.sku) == 0  # it holds the last unit
        retry = Call(url, json=retry_body, headers={**headers, **key})
        retry.start()
        # Either the retry waits behind the first request, or it has answered.
        wait_until(
            lambda: retry.response is not None or blocked_backends() == 2,
            30,
            "the retry to wait or answer",
        )
    first.join(60)
    retry.join(60)
    return first.response, retry.response


def test_concurrent_retry_replays_the_first_result(last_unit) -> None:
    server, product, headers = last_unit
    body = {"sku": product.sku, "quantity": 1}

    first, retry = race(server, product, headers, body, body)

    assert first.status_code == 201, first.text
    assert (retry.status_code, retry.json()) == (201, first.json())
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert Reservation.objects.filter(product=product).count() == 1
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (1, 1)
    assert gate.gate_read(sku=product.sku) == 0


def test_concurrent_retry_with_another_body_is_422(last_unit) -> None:
    server, product, headers = last_unit
    body = {"sku": product.sku, "quantity": 1}

    first, retry = race(server, product, headers, body, {**body, "ttl_seconds": 60})

    assert first.status_code == 201, first.text
    assert retry.status_code == 422, retry.text
    assert retry.json()["error"]["code"] == "idempotency_key_reused"
    assert Reservation.objects.filter(product=product).count() == 1
    assert gate.gate_read(sku=product.sku) == 0
