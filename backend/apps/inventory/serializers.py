"""API shapes of the inventory (input validation and output only, no logic).

Input fields are strict: they accept exactly what the OpenAPI schema describes. DRF's
own fields coerce (`"name": 0` becomes "0", `"quantity": "5"` becomes 5, a regex's
`$` lets a trailing newline through), which makes the schema a lie that generated
clients and contract tests trip over.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from apps.inventory.models import (
    RESERVATION_DEFAULT_TTL_SECONDS,
    RESERVATION_MAX_QUANTITY,
    RESERVATION_MAX_TTL_SECONDS,
    SKU_PATTERN,
    Reservation,
)

MAX_RESTOCK_QUANTITY = 1_000_000
NAME_MAX_LENGTH = 200
# PostgreSQL text cannot hold NUL; everything else is a name someone may use.
NAME_PATTERN = r"^[^\x00]*$"


class StrictCharField(serializers.CharField):
    """A JSON string, as given: no coercion from numbers or booleans, no trimming."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": SKU_PATTERN, "maxLength": 64})
class SkuField(StrictCharField):
    """A SKU, matched whole (a regex `$` would let a trailing newline through)."""

    default_error_messages = {"invalid_sku": "1-64 characters of A-Z a-z 0-9 . _ -"}
    _pattern = re.compile(SKU_PATTERN.removeprefix("^").removesuffix("$"))

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not self._pattern.fullmatch(value):
            self.fail("invalid_sku")
        return value


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": NAME_MAX_LENGTH,
        "pattern": NAME_PATTERN,
    }
)
class NameField(StrictCharField):
    pass


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (1.0 included, as JSON Schema has it); never a string or bool."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class ProductOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    active = serializers.BooleanField()
    on_hand = serializers.IntegerField(source="stock.on_hand")
    reserved = serializers.IntegerField(source="stock.reserved")
    available = serializers.IntegerField(source="stock.available")


class ProductCreateInput(serializers.Serializer):
    sku = SkuField(max_length=64)
    name = NameField(max_length=NAME_MAX_LENGTH)


class RestockInput(serializers.Serializer):
    quantity = StrictIntegerField(min_value=1, max_value=MAX_RESTOCK_QUANTITY)


class ReservationCreateInput(serializers.Serializer):
    sku = SkuField(max_length=64)
    quantity = StrictIntegerField(min_value=1, max_value=RESERVATION_MAX_QUANTITY)
    ttl_seconds = StrictIntegerField(
        min_value=30,
        max_value=RESERVATION_MAX_TTL_SECONDS,
        default=RESERVATION_DEFAULT_TTL_SECONDS,
    )


class ReservationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    sku = serializers.CharField(source="product.sku")
    quantity = serializers.IntegerField()
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()


# One instance answers every response: DRF deep-copies a serializer's declared fields
# for each new instance (a third of a millisecond on every accepted reservation),
# while `to_representation` keeps no state between calls.
_RESERVATION_OUTPUT = ReservationOutput()


# Likewise one instance validates every reservation request: `run_validation` keeps
# no state on the serializer or its fields (is_valid() is what stores the data and
# the errors), so threads share it. It is the path every sold-out attempt takes.
_RESERVATION_CREATE_INPUT = ReservationCreateInput()
# Both instances build their fields now, at import: once, in gunicorn's master (which
# imports the application before forking), instead of in each worker's first request.
_RESERVATION_OUTPUT.fields  # noqa: B018 - a cached property, built for its effect
_RESERVATION_CREATE_INPUT.fields  # noqa: B018


def reservation_create_input(data: Any) -> dict[str, Any]:
    """ReservationCreateInput's validated data for a request body; raises DRF's
    ValidationError with the same detail `is_valid(raise_exception=True)` would."""
    try:
        return _RESERVATION_CREATE_INPUT.run_validation(data)
    except ValidationError:
        # The errors come from a new serializer's is_valid(), which rewords some
        # (a null body: "No data provided"): a refused body reads exactly as before.
        ReservationCreateInput(data=data).is_valid(raise_exception=True)
        raise


def reservation_document(reservation: Reservation) -> dict[str, Any]:
    """ReservationOutput's representation of `reservation`, from one shared instance:
    whatever fields ReservationOutput declares, in its formats."""
    return _RESERVATION_OUTPUT.to_representation(reservation)
