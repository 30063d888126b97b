"""Units taken from the gate come back when the database fails after the take.

The failure is a real one: another session holds a table lock, and the request's
session gives up after its lock_timeout (a database error, not a refusal).
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from apps.inventory import gate, services
from apps.inventory.models import Product, Stock, StockMovement
from tests.support.postgres import raw_connection, role_setting_apply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_lock_timeout():
    # A role setting, not a session SET: it reaches the service's session also
    # through a transaction pooler (the PgBouncer lane).
    role_setting_apply(name="lock_timeout", value="200ms")
    yield
    role_setting_apply(name="lock_timeout", value=None)


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        # Loading the product, right after the take.
        (Product, "ACCESS EXCLUSIVE"),
        # The conditional UPDATE of the stock row.
        (Stock, "EXCLUSIVE"),
        # The ledger insert, the last statement before the commit.
        (StockMovement, "EXCLUSIVE"),
    ],
)
def test_database_error_after_the_take_gives_the_units_back(
    make_product, user, short_lock_timeout, model, mode
) -> None:
    product = make_product(on_hand=5)
    assert gate.gate_read(sku=product.sku) == 5
    locker = raw_connection()
    try:
        with locker.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {model._meta.db_table} IN {mode} MODE")
            with pytest.raises(OperationalError, match="lock timeout"):
                services.reservation_create(owner=user, sku=product.sku, quantity=3)
    finally:
        locker.rollback()
        locker.close()

    assert gate.gate_read(sku=product.sku) == 5
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (5, 0)
    # The units are really there: the next request gets them.
    services.reservation_create(owner=user, sku=product.sku, quantity=5)
    assert gate.gate_read(sku=product.sku) == 0
