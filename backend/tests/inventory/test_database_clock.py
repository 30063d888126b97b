"""Deadlines are set and compared with PostgreSQL's clock, not the container's.

The app's clock is skewed by an hour either way (as in a container whose clock
drifted); the database's stays right, and decides.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from apps.inventory import services
from apps.inventory.errors import ReservationExpired
from apps.inventory.models import Reservation, Stock

pytestmark = pytest.mark.django_db(transaction=True)

SKEW = timedelta(hours=1)


def skew_app_clock(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> None:
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + delta)


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def reserved(product) -> int:
    return Stock.objects.get(product=product).reserved


def test_ttl_counts_from_the_database_clock(make_product, user, monkeypatch):
    product = make_product(on_hand=5)
    skew_app_clock(monkeypatch, SKEW)
    before = database_now()
    result = services.reservation_create(
        owner=user, sku=product.sku, quantity=1, ttl_seconds=900
    )
    after = database_now()
    stored = Reservation.objects.get(pk=result.reservation.pk).expires_at
    assert result.reservation.expires_at == stored
    assert before + timedelta(seconds=900) <= stored <= after + timedelta(seconds=900)


def test_a_fast_app_clock_expires_nothing_early(make_product, user, monkeypatch):
    product = make_product(on_hand=5)
    result = services.reservation_create(
        owner=user, sku=product.sku, quantity=2, ttl_seconds=900
    )
    skew_app_clock(monkeypatch, SKEW)
    assert services.reservations_expire() == 0
    assert Reservation.objects.get(pk=result.reservation.pk).status == "active"
    assert reserved(product) == 2


def test_a_slow_app_clock_still_expires_on_time(make_product, user, monkeypatch):
    product = make_product(on_hand=5)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=2)
    Reservation.objects.filter(pk=result.reservation.pk).update(
        expires_at=Now() - timedelta(seconds=1)
    )
    skew_app_clock(monkeypatch, -SKEW)
    assert services.reservations_expire() == 1
    assert reserved(product) == 0


def test_a_slow_app_clock_cannot_confirm_a_late_reservation(
    make_product, user, staff, monkeypatch
):
    product = make_product(on_hand=5)
    result = services.reservation_create(owner=user, sku=product.sku, quantity=2)
    Reservation.objects.filter(pk=result.reservation.pk).update(
        expires_at=Now() - timedelta(seconds=1)
    )
    skew_app_clock(monkeypatch, -SKEW)
    with pytest.raises(ReservationExpired):
        services.reservation_confirm(reservation_id=result.reservation.pk, actor=staff)
    assert Reservation.objects.get(pk=result.reservation.pk).status == "expired"
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (5, 0)


def test_a_fast_app_clock_confirms_a_reservation_in_time(
    make_product, user, staff, monkeypatch
):
    product = make_product(on_hand=5)
    result = services.reservation_create(
        owner=user, sku=product.sku, quantity=2, ttl_seconds=900
    )
    skew_app_clock(monkeypatch, SKEW)
    confirmed = services.reservation_confirm(
        reservation_id=result.reservation.pk, actor=staff
    )
    assert confirmed.status == "confirmed"
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (3, 0)
