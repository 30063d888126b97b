"""API shapes of the inventory (input validation and output only, no logic)."""

from __future__ import annotations

from rest_framework import serializers

from apps.inventory.models import RESERVATION_MAX_QUANTITY, SKU_PATTERN

MAX_RESTOCK_QUANTITY = 1_000_000


class ProductOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    active = serializers.BooleanField()
    on_hand = serializers.IntegerField(source="stock.on_hand")
    reserved = serializers.IntegerField(source="stock.reserved")
    available = serializers.IntegerField(source="stock.available")


class ProductCreateInput(serializers.Serializer):
    sku = serializers.RegexField(SKU_PATTERN, max_length=64)
    name = serializers.CharField(max_length=200, trim_whitespace=True)


class RestockInput(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_RESTOCK_QUANTITY)


class ReservationCreateInput(serializers.Serializer):
    sku = serializers.RegexField(SKU_PATTERN, max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=RESERVATION_MAX_QUANTITY)
    ttl_seconds = serializers.IntegerField(min_value=30, max_value=3600, default=900)


class ReservationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    sku = serializers.CharField(source="product.sku")
    quantity = serializers.IntegerField()
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorOutput(serializers.Serializer):
    """The project's error body (every 4xx and 5xx)."""

    error = ErrorDetail()
    request_id = serializers.CharField(allow_null=True)
