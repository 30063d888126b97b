"""Every Redis command of the gate goes through one path: breaker, timing, errors."""

from __future__ import annotations

import logging

import pytest

from apps.inventory import gate, metrics, services
from tests.support.gate import gate_counter_corrupt

pytestmark = pytest.mark.django_db(transaction=True)


def observations() -> float:
    # Each observation lands in exactly one of the histogram's internal buckets.
    return sum(bucket.get() for bucket in metrics.gate_seconds._buckets)


def test_each_gate_command_is_timed(make_product) -> None:
    product = make_product(on_hand=4)
    calls = [
        lambda: gate.gate_read(sku=product.sku),
        lambda: gate.gate_warm(sku=product.sku, available=4),
        lambda: gate.gate_repair(sku=product.sku, database_available=lambda: 4),
        # A script (one EVAL), last: the counter it raises would make the repair write.
        lambda: gate.gate_give_back(sku=product.sku, quantity=1),
    ]
    for call in calls:
        before = observations()
        call()
        assert observations() == before + 1


@pytest.mark.parametrize(
    "call",
    [
        lambda sku: gate.gate_read(sku=sku),
        lambda sku: gate.gate_repair(sku=sku, database_available=lambda: 1),
        lambda sku: gate.gate_take(sku=sku, quantity=1),
    ],
    ids=["read", "repair", "take"],
)
def test_an_open_breaker_stops_every_gate_command(make_product, call) -> None:
    product = make_product(on_hand=4)
    gate.breaker.trip()
    with pytest.raises(gate.GateUnavailable, match="circuit open"):
        call(product.sku)
    gate.breaker.reset()
    assert gate.gate_read(sku=product.sku) == 4  # nothing was written


def test_reconcile_is_skipped_while_the_breaker_is_open(make_product, caplog) -> None:
    product = make_product(on_hand=5)
    gate_counter_corrupt(sku=product.sku, expected=5, value=1)
    gate.breaker.trip()
    with caplog.at_level(logging.WARNING, logger="apps.inventory.services"):
        assert services.inventory_gate_reconcile() == 0
    gate.breaker.reset()
    assert gate.gate_read(sku=product.sku) == 1
    assert caplog.messages == [
        "reconciliation skipped, Redis unavailable: "
        "circuit open after a recent Redis failure"
    ]
