"""Reservation requests are validated by one shared ReservationCreateInput instance:
valid bodies must give what a new serializer's validated_data gives, and every
invalid body must be refused with the errors a new serializer's is_valid() raises
(the shared path hands errors to one; what is tested there is that it refuses, and
that nothing carries over from one body to the next)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.exceptions import ValidationError

from apps.inventory.serializers import ReservationCreateInput, reservation_create_input

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


@pytest.mark.parametrize("body", REQUEST_BODIES, ids=repr)
def test_shared_validation_equals_a_new_serializers(body: object) -> None:
    assert _shared_instance(body) == _fresh_serializer(body)


def test_shared_validation_keeps_no_state_between_threads() -> None:
    # Valid and invalid bodies interleaved over 8 threads: each answer is its own.
    bodies = REQUEST_BODIES * 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(_shared_instance, bodies))
    assert answers == [_fresh_serializer(body) for body in bodies]
