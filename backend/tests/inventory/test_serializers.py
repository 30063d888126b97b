"""Reservations are answered from one shared ReservationOutput instance: the answer
must stay exactly what a new serializer gives, whatever the time zone (the input's
shared instance: test_input_validation.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.inventory import services
from apps.inventory.models import Reservation
from apps.inventory.serializers import ReservationOutput, reservation_document

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Paris"])
def test_the_document_equals_the_serializers_output(
    user, make_product, time_zone: str
) -> None:
    product = make_product(on_hand=10)
    created = services.reservation_create(
        owner=user, sku=product.sku, quantity=2, ttl_seconds=600
    ).reservation
    confirmed = services.reservation_create(
        owner=user, sku=product.sku, quantity=1
    ).reservation
    Reservation.objects.filter(pk=confirmed.pk).update(
        status=Reservation.Status.CONFIRMED,
        # Microseconds and a deadline in the past: both shown as DRF shows them.
        expires_at=timezone.now() - timedelta(microseconds=123457),
    )
    loaded = Reservation.objects.select_related("product").get(pk=confirmed.pk)

    with override_settings(TIME_ZONE=time_zone):
        for reservation in (created, loaded):
            document = reservation_document(reservation)
            assert document == ReservationOutput(reservation).data
            assert list(document) == list(ReservationOutput().fields)
