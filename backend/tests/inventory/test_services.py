"""Reservation rules through the services, against real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.inventory import gate, services
from apps.inventory.errors import (
    IdempotencyKeyReused,
    InsufficientStock,
    ProductNotFound,
    ReservationExpired,
    ReservationNotActive,
    ReservationNotFound,
)
from apps.inventory.models import Product, Reservation, Stock, StockMovement
from tests.support.gate import gate_counter_corrupt

pytestmark = pytest.mark.django_db(transaction=True)


def stock_of(product: Product) -> tuple[int, int]:
    stock = Stock.objects.get(product=product)
    return stock.on_hand, stock.reserved


def ledger_sums(product: Product) -> tuple[int, int]:
    sums = StockMovement.objects.filter(product=product).aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    return sums["on_hand"] or 0, sums["reserved"] or 0


def test_reserve_confirm_moves_units_once(make_product, user, staff) -> None:
    product = make_product(on_hand=10)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=3)
    assert result.created is True
    assert stock_of(product) == (10, 3)
    assert gate.gate_read(sku=product.sku) == 7

    services.reservation_confirm(reservation_id=result.reservation.id, actor=staff)
    assert stock_of(product) == (7, 0)
    assert gate.gate_read(sku=product.sku) == 7
    with pytest.raises(ReservationNotActive) as second:
        services.reservation_confirm(reservation_id=result.reservation.id, actor=staff)
    assert second.value.details == {"status": "confirmed"}
    with pytest.raises(ReservationNotActive):
        services.reservation_cancel(reservation_id=result.reservation.id, actor=user)
    assert stock_of(product) == (7, 0)
    assert ledger_sums(product) == stock_of(product)
    kinds = list(
        StockMovement.objects.filter(product=product)
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == ["restock", "reserve", "confirm"]


def test_cancel_gives_units_back_to_database_and_gate(make_product, user) -> None:
    product = make_product(on_hand=5)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=5)
    assert gate.gate_read(sku=product.sku) == 0
    with pytest.raises(InsufficientStock) as refused:
        services.reservation_create(owner=user, sku=product.sku, quantity=1)
    assert refused.value.details == {"sku": product.sku, "requested": 1, "available": 0}
    services.reservation_cancel(reservation_id=result.reservation.id, actor=user)
    assert stock_of(product) == (5, 0)
    assert gate.gate_read(sku=product.sku) == 5
    with pytest.raises(ReservationNotActive):
        services.reservation_cancel(reservation_id=result.reservation.id, actor=user)
    assert ledger_sums(product) == (5, 0)


def test_database_refuses_when_gate_counter_is_too_high(make_product, user) -> None:
    product = make_product(on_hand=2)
    gate_counter_corrupt(sku=product.sku, expected=2, value=50)
    services.reservation_create(owner=user, sku=product.sku, quantity=2)
    with pytest.raises(InsufficientStock) as refused:
        services.reservation_create(owner=user, sku=product.sku, quantity=1)
    assert refused.value.details["available"] == 0
    # The gate got the refused unit back: 50 - 2 - 1 + 1.
    assert gate.gate_read(sku=product.sku) == 48
    assert stock_of(product) == (2, 2)
    # The gate admitted it, so its rows were written before the stock UPDATE
    # refused: they were rolled back with it.
    assert Reservation.objects.filter(product=product).count() == 1
    assert ledger_sums(product) == (2, 2)


def test_missing_gate_key_is_warmed_from_the_database(make_product, user) -> None:
    product = make_product(on_hand=9)
    gate._client().delete(gate.gate_key(product.sku))
    services.reservation_create(owner=user, sku=product.sku, quantity=4)
    assert gate.gate_read(sku=product.sku) == 5


def test_unknown_and_inactive_skus_are_not_found(make_product, user) -> None:
    with pytest.raises(ProductNotFound):
        services.reservation_create(owner=user, sku="NOPE", quantity=1)
    product = make_product(on_hand=3)
    Product.objects.filter(pk=product.pk).update(active=False)
    with pytest.raises(ProductNotFound):
        services.reservation_create(owner=user, sku=product.sku, quantity=1)
    assert stock_of(product) == (3, 0)


def test_idempotent_replay_and_mismatch(make_product, user, make_user) -> None:
    product = make_product(on_hand=10)
    first = services.reservation_create(
        owner=user, sku=product.sku, quantity=2, idempotency_key="order-1"
    )
    replay = services.reservation_create(
        owner=user, sku=product.sku, quantity=2, idempotency_key="order-1"
    )
    assert (replay.created, replay.reservation.id) == (False, first.reservation.id)
    assert stock_of(product) == (10, 2)
    with pytest.raises(IdempotencyKeyReused):
        services.reservation_create(
            owner=user, sku=product.sku, quantity=3, idempotency_key="order-1"
        )
    # Keys are per owner: another user's same key is a new reservation.
    other = services.reservation_create(
        owner=make_user(), sku=product.sku, quantity=2, idempotency_key="order-1"
    )
    assert other.created is True
    assert stock_of(product) == (10, 4)
    assert gate.gate_read(sku=product.sku) == 6


def test_expiry_releases_units_once(make_product, user) -> None:
    product = make_product(on_hand=6)
    past = [
        services.reservation_create(owner=user, sku=product.sku, quantity=1)
        for _ in range(3)
    ]
    keep = services.reservation_create(owner=user, sku=product.sku, quantity=2)
    Reservation.objects.filter(pk__in=[r.reservation.pk for r in past]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.reservations_expire(batch_size=2) == 3
    assert services.reservations_expire() == 0
    assert stock_of(product) == (6, 2)
    assert gate.gate_read(sku=product.sku) == 4
    statuses = dict(Reservation.objects.values_list("pk", "status"))
    assert statuses[keep.reservation.pk] == "active"
    assert [statuses[r.reservation.pk] for r in past] == ["expired"] * 3
    assert ledger_sums(product) == (6, 2)


def test_confirming_an_expired_reservation_is_refused_and_releases(
    make_product, user, staff
) -> None:
    product = make_product(on_hand=4)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=4)
    Reservation.objects.filter(pk=result.reservation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(ReservationExpired):
        services.reservation_confirm(reservation_id=result.reservation.id, actor=staff)
    assert stock_of(product) == (4, 0)
    assert Reservation.objects.get(pk=result.reservation.pk).status == "expired"
    with pytest.raises(ReservationExpired):
        services.reservation_confirm(reservation_id=result.reservation.id, actor=staff)
    assert services.reservations_expire() == 0
    assert ledger_sums(product) == (4, 0)


def test_owner_only_unless_staff(make_product, user, make_user, staff) -> None:
    product = make_product(on_hand=4)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=1)
    with pytest.raises(ReservationNotFound):
        services.reservation_cancel(
            reservation_id=result.reservation.id, actor=make_user()
        )
    services.reservation_cancel(reservation_id=result.reservation.id, actor=user)
    assert stock_of(product) == (4, 0)


def test_database_constraints_hold_without_the_services(make_product) -> None:
    product = make_product(on_hand=1)
    for sql in (
        "UPDATE inventory_stock SET reserved = on_hand + 1 WHERE product_id = %s",
        "UPDATE inventory_stock SET on_hand = -1, reserved = 0 WHERE product_id = %s",
        "UPDATE inventory_stock SET reserved = -1 WHERE product_id = %s",
    ):
        with (
            pytest.raises(IntegrityError),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [product.pk])
    assert stock_of(product) == (1, 0)


def test_redis_down_goes_to_the_database_path(make_product, user, settings) -> None:
    from apps.inventory import metrics

    fallbacks_before = metrics.gate_fallbacks._value.get()
    product = make_product(on_hand=2)
    dead_redis = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
    dead = {"default": dead_redis, settings.DURABLE_REDIS_ALIAS: dead_redis}
    settings.CACHES = dead  # the setting_changed signal rebuilds the connections
    try:
        services.reservation_create(owner=user, sku=product.sku, quantity=2)
        with pytest.raises(InsufficientStock):
            services.reservation_create(owner=user, sku=product.sku, quantity=1)
    finally:
        del settings.CACHES
    assert stock_of(product) == (2, 2)
    assert metrics.gate_fallbacks._value.get() == fallbacks_before + 2
    assert metrics.gate_fallbacks._value.get() == fallbacks_before + 2


def test_reconcile_pages_visit_every_stock_row_once_in_order(make_product) -> None:
    # Keyset pages, not a server-side cursor (which a transaction pooler breaks):
    # page boundaries must neither skip nor repeat a row.
    product_ids = sorted(make_product(on_hand=n).pk for n in range(5))
    for batch in (1, 2, 5, 6):
        seen = [stock.pk for stock in services._stocks_by_product(batch=batch)]
        assert seen == product_ids, batch
