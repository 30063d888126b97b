"""A per-owner limit on units held in active reservations."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.db.models.functions import Now

from apps.core.drf.exceptions import DomainError
from apps.inventory import gate, services
from apps.inventory.errors import ReservationLimitExceeded
from apps.inventory.models import Reservation, Stock

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


@pytest.fixture
def limit_5_and_12_per_hour(settings):
    settings.RESERVATION_MAX_UNITS_PER_OWNER = 5
    settings.RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR = 12


def test_an_ordinary_account_cannot_drain_a_product(
    limit_5_and_12_per_hour, client_for, make_product, user
) -> None:
    """The drain of the security review: reserve -> confirm -> repeat, as an owner."""
    product = make_product(on_hand=100)
    client = client_for(user)
    answers = []
    for _ in range(10):
        created = client.post(
            "/api/v1/reservations/", {"sku": product.sku, "quantity": 5}, format="json"
        )
        answers.append(created.status_code)
        if created.status_code == 201:
            confirm = client.post(
                f"/api/v1/reservations/{created.json()['id']}/confirm/"
            )
            answers.append(confirm.status_code)
            if confirm.status_code == 403:
                assert confirm.json()["error"]["code"] == "permission_denied"
    # One reservation, its confirm refused; then the held units block the rest.
    assert answers == [201, 403] + [409] * 9
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (100, 5)


def test_units_reserved_per_hour_are_bounded(
    limit_5_and_12_per_hour, make_product, make_user
) -> None:
    """Reserve -> cancel (or let expire) -> reserve again cannot hold a product for
    good: every unit reserved within the hour counts, whatever became of it."""
    product = make_product(on_hand=100)
    owner = make_user()
    first = services.reservation_create(owner=owner, sku=product.sku, quantity=5)
    services.reservation_cancel(reservation_id=first.reservation.pk, actor=owner)
    second = services.reservation_create(owner=owner, sku=product.sku, quantity=5)
    Reservation.objects.filter(pk=second.reservation.pk).update(
        expires_at=Now() - timedelta(seconds=1)
    )
    services.reservation_create(owner=owner, sku=product.sku, quantity=2)
    with pytest.raises(DomainError) as refused:
        services.reservation_create(owner=owner, sku=product.sku, quantity=1)
    assert refused.value.default_code == "reservation_rate_exceeded"
    assert refused.value.details == {"limit": 12, "reserved": 12, "requested": 1}
    assert refused.value.status_code == 409
    # An hour later those units no longer count.
    Reservation.objects.filter(owner=owner).update(
        created_at=Now() - timedelta(minutes=61)
    )
    services.reservation_create(owner=owner, sku=product.sku, quantity=3)


def test_the_storefront_confirms_any_owners_reservation(
    client_for, make_product, make_user, user
) -> None:
    """The intended caller: an account holding inventory.confirm_reservation (the
    storefront's backend after payment), not staff, confirms a customer's hold."""
    from django.contrib.auth.models import Permission

    product = make_product(on_hand=10)
    storefront = make_user()
    storefront.user_permissions.add(
        Permission.objects.get(
            codename="confirm_reservation", content_type__app_label="inventory"
        )
    )
    created = client_for(user).post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": 3}, format="json"
    )
    url = f"/api/v1/reservations/{created.json()['id']}/confirm/"
    confirmed = client_for(storefront).post(url)
    assert (confirmed.status_code, confirmed.json()["status"]) == (200, "confirmed")
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (7, 0)
