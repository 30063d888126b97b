"""Reservations are validated by one shared ReservationCreateInput instance and
answered from one shared ReservationOutput instance: the validated data, the errors
and the answer must stay exactly what a new serializer gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.inventory import services
from apps.inventory.models import Reservation
from apps.inventory.serializers import (
    ReservationCreateInput,
    ReservationOutput,
    reservation_create_input,
    reservation_document,
)

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


REQUEST_BODIES = [
    {"sku": "WIDGET-1", "quantity": 2},
    {"sku": "WIDGET-1", "quantity": 2.0, "ttl_seconds": 30},
    {"sku": "WIDGET-1", "quantity": 0},
    {"sku": "WIDGET-1", "quantity": "2"},
    {"sku": "WIDGET-1", "quantity": True, "ttl_seconds": 10**9},
    {"sku": "bad sku\n", "quantity": 1},
    {"sku": 5},
    {},
    ["not", "an", "object"],
    "text",
    None,
]


def _fresh_serializer(body: object) -> tuple[str, object]:
    serializer = ReservationCreateInput(data=body)
    if serializer.is_valid():
        return "valid", dict(serializer.validated_data)
    return "invalid", serializer.errors


def _shared_instance(body: object) -> tuple[str, object]:
    try:
        return "valid", reservation_create_input(body)
    except ValidationError as error:  # raised as is_valid(raise_exception=True) does
        return "invalid", error.detail


@pytest.mark.django_db(False)
@pytest.mark.parametrize("body", REQUEST_BODIES, ids=repr)
def test_shared_validation_equals_a_new_serializers(body: object) -> None:
    assert _shared_instance(body) == _fresh_serializer(body)


@pytest.mark.django_db(False)
def test_shared_validation_keeps_no_state_between_threads() -> None:
    # Valid and invalid bodies interleaved over 8 threads: each answer is its own.
    bodies = REQUEST_BODIES * 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(_shared_instance, bodies))
    assert answers == [_fresh_serializer(body) for body in bodies]
