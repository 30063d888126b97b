"""Reconciliation and expiry tasks, run in-process against real PostgreSQL and Redis."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inventory import gate, metrics, services
from apps.inventory.gate import RECONCILE_LOCK_KEY
from apps.inventory.models import Reservation, Stock
from apps.inventory.tasks import (
    expire_reservations,
    gate_check_server,
    reconcile_inventory_redis_db,
)
from tests.support.gate import gate_counter_corrupt

pytestmark = pytest.mark.django_db(transaction=True)


def test_reconcile_repairs_a_wrong_and_a_deleted_counter(
    make_product, user, caplog
) -> None:
    wrong = make_product(on_hand=10)
    deleted = make_product(on_hand=7)
    fine = make_product(on_hand=3)
    services.reservation_create(owner=user, sku=wrong.sku, quantity=4)
    gate_counter_corrupt(sku=wrong.sku, expected=6, value=999)
    gate._client().delete(gate.gate_key(deleted.sku))
    repairs_before = metrics.reconcile_repairs._value.get()

    with caplog.at_level(logging.INFO, logger="apps.inventory.services"):
        repaired = reconcile_inventory_redis_db()

    assert repaired == 2
    assert metrics.reconcile_repairs._value.get() == repairs_before + 2
    assert gate.gate_read(sku=wrong.sku) == 6
    assert gate.gate_read(sku=deleted.sku) == 7
    assert gate.gate_read(sku=fine.sku) == 3
    repaired_lines = {
        (r.sku, r.redis_value, r.database_value)
        for r in caplog.records
        if r.getMessage() == "reconciled inventory counter"
    }
    assert repaired_lines == {(wrong.sku, 999, 6), (deleted.sku, None, 7)}
    # A second run finds nothing to repair.
    assert reconcile_inventory_redis_db() == 0


def test_reconcile_does_not_overlap(make_product, caplog) -> None:
    product = make_product(on_hand=5)
    gate_counter_corrupt(sku=product.sku, expected=5, value=1)
    lock = gate._client().lock(RECONCILE_LOCK_KEY, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        with caplog.at_level(logging.INFO, logger="apps.inventory.services"):
            assert reconcile_inventory_redis_db() == 0
    finally:
        lock.release()
    assert gate.gate_read(sku=product.sku) == 1
    assert "reconciliation already running elsewhere; skipped" in caplog.messages


def test_expire_task_releases_expired_reservations(make_product, user) -> None:
    product = make_product(on_hand=8)
    made = [
        services.reservation_create(owner=user, sku=product.sku, quantity=2)
        for _ in range(3)
    ]
    Reservation.objects.filter(pk__in=[m.reservation.pk for m in made[:2]]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert expire_reservations() == 2
    assert expire_reservations() == 0
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (8, 2)
    assert gate.gate_read(sku=product.sku) == 6


def test_another_redis_server_is_reconciled_at_once(make_product) -> None:
    product = make_product(on_hand=7)
    client = gate._client()
    key = gate.gate_key(product.sku)
    run_id = client.info("server")["run_id"]
    # As after a failover: the promoted replica's counter and mark are the old
    # primary's (the counter missed the last writes).
    client.set(key, 100)
    client.set(gate.SERVER_MARK_KEY, "run-id-of-the-old-primary")
    assert gate_check_server() == 1
    assert gate.gate_read(sku=product.sku) == 7
    assert client.get(gate.SERVER_MARK_KEY).decode() == run_id

    # The same server as last time: nothing to do, whatever the counters say
    # (the scheduled reconciliation repairs drift).
    client.set(key, 100)
    assert gate_check_server() == 0
    assert gate.gate_read(sku=product.sku) == 100
