"""A per-owner limit on units held in active reservations."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connections

from apps.core.exceptions import ReservationLimitExceeded
from apps.inventory import gate, services
from apps.inventory.models import Stock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limit_5(settings):
    settings.RESERVATION_MAX_UNITS_PER_OWNER = 5


def test_reservation_above_the_owner_limit_is_refused(
    limit_5, make_product, make_user
) -> None:
    product = make_product(on_hand=100)
    owner = make_user()
    services.reservation_create(owner=owner, sku=product.sku, quantity=3)
    with pytest.raises(ReservationLimitExceeded) as refused:
        services.reservation_create(owner=owner, sku=product.sku, quantity=3)
    assert refused.value.details == {"limit": 5, "held": 3, "requested": 3}
    # Up to the limit is fine; somebody else has a limit of their own.
    services.reservation_create(owner=owner, sku=product.sku, quantity=2)
    services.reservation_create(owner=make_user(), sku=product.sku, quantity=5)
    stock = Stock.objects.get(product=product)
    assert stock.reserved == 10
    # The refused request gave its gate units back.
    assert gate.gate_take(sku=product.sku, quantity=90).admitted is True
    assert gate.gate_take(sku=product.sku, quantity=1).admitted is False


def test_cancelled_and_expired_units_no_longer_count(
    limit_5, make_product, make_user
) -> None:
    product = make_product(on_hand=100)
    owner = make_user()
    first = services.reservation_create(owner=owner, sku=product.sku, quantity=5)
    services.reservation_cancel(reservation_id=first.reservation.pk, actor=owner)
    second = services.reservation_create(owner=owner, sku=product.sku, quantity=5)
    # Past its deadline (not swept yet): it holds nothing the owner can use.
    type(second.reservation).objects.filter(pk=second.reservation.pk).update(
        expires_at="2000-01-01T00:00:00Z"
    )
    services.reservation_create(owner=owner, sku=product.sku, quantity=5)


def test_api_answers_409_reservation_limit_exceeded(
    limit_5, client_for, make_product, user
) -> None:
    product = make_product(on_hand=100)
    client = client_for(user)
    body = {"sku": product.sku, "quantity": 4}
    assert client.post("/api/v1/reservations/", body, format="json").status_code == 201
    refused = client.post("/api/v1/reservations/", body, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "reservation_limit_exceeded"
    assert refused.json()["error"]["details"] == {
        "limit": 5,
        "held": 4,
        "requested": 4,
    }


def test_concurrent_reservations_of_one_owner_stay_within_the_limit(
    limit_5, make_product, make_user
) -> None:
    product = make_product(on_hand=100)
    owner = make_user()
    start = threading.Barrier(8)
    outcomes: Counter = Counter()
    counted = threading.Lock()

    def reserve() -> None:
        start.wait()
        try:
            services.reservation_create(owner=owner, sku=product.sku, quantity=1)
            outcome = "created"
        except ReservationLimitExceeded:
            outcome = "refused"
        finally:
            connections.close_all()
        with counted:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == Counter({"created": 5, "refused": 3})
    assert Stock.objects.get(product=product).reserved == 5
