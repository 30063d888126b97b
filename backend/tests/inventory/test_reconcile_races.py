"""Reconciliation racing real traffic, stepped in a fixed order (no sleeps).

The reconciler reads the database and the Redis counter at different moments;
traffic may commit in between. Each case runs one change to the product (a restock,
a cancel, an expiry, a reservation) at a chosen step of the reconciliation, through
the real services, and checks the counter afterwards: a race may leave it too high
(the database refuses the extra units, the next run repairs it), never too low.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inventory import gate, services
from apps.inventory.models import Reservation, Stock
from apps.inventory.tasks import reconcile_inventory_redis_db
from tests.support.gate import gate_counter_corrupt

pytestmark = pytest.mark.django_db(transaction=True)


def available(product) -> int:
    return Stock.objects.get(product=product).available


class Steps:
    """Run planned actions at named steps of the reconciliation, once each."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, sku: str) -> None:
        self.plan: dict[str, Callable[[], object]] = {}
        self.fired: list[str] = []
        read_counter = gate.gate_read
        read_database = services.stock_available

        def counter_read(*, sku: str) -> int | None:
            if sku == self.sku:
                self.fire("before counter read")
            return read_counter(sku=sku)

        def database_read(**kwargs: object) -> int:
            self.fire("before database read")
            value = read_database(**kwargs)
            self.fire("after database read")
            return value

        self.sku = sku
        monkeypatch.setattr(gate, "gate_read", counter_read)
        monkeypatch.setattr(services, "stock_available", database_read)

    def fire(self, step: str) -> None:
        action = self.plan.pop(step, None)
        if action is not None:
            self.fired.append(step)
            action()


def test_restock_between_snapshot_and_counter_read_is_kept(
    make_product, staff, monkeypatch
) -> None:
    # The reported interleaving: the reconciler has read X as 0 available, staff
    # restock 100 (the counter becomes 100), then the reconciler reaches X.
    product = make_product(on_hand=0)
    steps = Steps(monkeypatch, product.sku)
    steps.plan["before counter read"] = lambda: services.stock_restock(
        sku=product.sku, quantity=100, actor=staff
    )

    reconcile_inventory_redis_db()

    assert steps.fired == ["before counter read"]
    assert (available(product), gate.gate_read(sku=product.sku)) == (100, 100)


@pytest.mark.parametrize("release", ["cancel", "expire"])
def test_release_between_snapshot_and_counter_read_is_kept(
    make_product, user, monkeypatch, release
) -> None:
    product = make_product(on_hand=10)
    held = services.reservation_create(owner=user, sku=product.sku, quantity=2)
    assert gate.gate_read(sku=product.sku) == 8

    def release_units() -> None:
        if release == "cancel":
            services.reservation_cancel(reservation_id=held.reservation.id, actor=user)
        else:
            Reservation.objects.filter(pk=held.reservation.pk).update(
                expires_at=timezone.now() - timedelta(minutes=5)
            )
            assert services.reservations_expire() == 1

    steps = Steps(monkeypatch, product.sku)
    steps.plan["before counter read"] = release_units

    reconcile_inventory_redis_db()

    assert steps.fired == ["before counter read"]
    assert (available(product), gate.gate_read(sku=product.sku)) == (10, 10)


# While a repair is under way (counter 12, database 8: too high, as after a
# restored Redis backup), traffic touches the product. Expected counter after the
# racing run; the next, quiet run makes it equal to the database.
RACES = {
    "restock before the database read": ({"before database read": "restock"}, 112),
    "cancel after the database read": ({"after database read": "cancel"}, 14),
    "reserve after the database read": ({"after database read": "reserve"}, 10),
    # The counter ends where the reconciler first read it (12 - 2 + 2), while the
    # database read saw the reservation but not the cancel: writing that read
    # would leave the counter 2 below the database.
    "reserve before, cancel after the database read": (
        {"before database read": "reserve", "after database read": "cancel"},
        12,
    ),
}


@pytest.mark.parametrize("race", list(RACES))
def test_traffic_during_a_repair_never_leaves_the_counter_too_low(
    make_product, user, monkeypatch, race
) -> None:
    product = make_product(on_hand=10)
    held = services.reservation_create(owner=user, sku=product.sku, quantity=2)
    gate_counter_corrupt(sku=product.sku, expected=8, value=12)
    actions = {
        "restock": lambda: services.stock_restock(
            sku=product.sku, quantity=100, actor=user
        ),
        "cancel": lambda: services.reservation_cancel(
            reservation_id=held.reservation.id, actor=user
        ),
        "reserve": lambda: services.reservation_create(
            owner=user, sku=product.sku, quantity=2
        ),
    }
    plan, expected_counter = RACES[race]
    steps = Steps(monkeypatch, product.sku)
    steps.plan = {step: actions[name] for step, name in plan.items()}

    reconcile_inventory_redis_db()

    assert sorted(steps.fired) == sorted(plan)
    counter = gate.gate_read(sku=product.sku)
    assert counter == expected_counter
    assert counter >= available(product)
    reconcile_inventory_redis_db()
    assert gate.gate_read(sku=product.sku) == available(product)
