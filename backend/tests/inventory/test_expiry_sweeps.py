"""Expiry sweeps: one stock update per product and batch, in product order.

Two sweeps run at once on their own connections. The test holds the ledger table
in SHARE mode so each sweep stops at its first ledger insert, with whatever stock
rows it has updated still locked; progress is read from PostgreSQL's lock table.
"""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from apps.inventory import gate, services
from apps.inventory.models import Reservation, Stock, StockMovement
from tests.support.factories import reservation_expired
from tests.support.postgres import blocked_backends
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def expired_reservations(user, layout: list[tuple[int, object, int]]) -> None:
    """Make expired reservations with chosen ids (the sweep's lock order)."""
    for number, product, quantity in layout:
        reservation_expired(
            owner=user, product=product, quantity=quantity, number=number
        )


class Sweep(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.released: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.released = services.reservations_expire(batch_size=2)
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()


def test_two_sweeps_over_crossing_products_do_not_deadlock(make_product, user):
    a = make_product(on_hand=10)
    b = make_product(on_hand=10)
    assert a.pk < b.pk
    # By id: sweep one takes 1 (A) and 2 (B), sweep two takes 3 (B) and 4 (A).
    expired_reservations(user, [(1, a, 1), (2, b, 2), (3, b, 3), (4, a, 4)])

    first, second = Sweep(), Sweep()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {StockMovement._meta.db_table} IN SHARE MODE")
        first.start()
        wait_until(lambda: blocked_backends() == 1, 30, "the first sweep to wait")
        second.start()
        wait_until(lambda: blocked_backends() == 2, 30, "the second sweep to wait")
    first.join(60)
    second.join(60)

    assert (first.error, second.error) == (None, None)
    assert (first.released, second.released) == (2, 2)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"expired"}
    expiries = StockMovement.objects.filter(kind="expire")
    assert sorted(expiries.values_list("reservation_id", flat=True)) == [
        uuid.UUID(int=n) for n in (1, 2, 3, 4)
    ]
    for product in (a, b):
        stock = Stock.objects.get(product=product)
        assert (stock.on_hand, stock.reserved) == (10, 0)
        assert gate.gate_read(sku=product.sku) == 10


def test_a_batch_updates_each_stock_row_once_in_product_order(make_product, user):
    a = make_product(on_hand=10)
    b = make_product(on_hand=10)
    layout = [(n, b if n % 2 else a, 1) for n in range(1, 9)]
    expired_reservations(user, layout)

    with CaptureQueriesContext(connection) as captured:
        assert services.reservations_expire(batch_size=500) == 8

    stock_updates = [
        q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")
    ]
    stock_updates = [sql for sql in stock_updates if '"inventory_stock"' in sql]
    product_ids = [
        int(re.search(r'"product_id" = (\d+)', sql).group(1)) for sql in stock_updates
    ]
    assert product_ids == [a.pk, b.pk]
    for product in (a, b):
        stock = Stock.objects.get(product=product)
        assert (stock.on_hand, stock.reserved) == (10, 0)
        assert gate.gate_read(sku=product.sku) == 10
    assert StockMovement.objects.filter(kind="expire").count() == 8
    assert services.reservations_expire() == 0
