"""Inventory reads."""

from __future__ import annotations

import re
import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.core.exceptions import ProductNotFound, ReservationNotFound
from apps.inventory.models import SKU_PATTERN, Product, Reservation, Stock

SKU_RE = re.compile(SKU_PATTERN)


def product_list(*, include_inactive: bool = False) -> QuerySet[Product]:
    """Return products with their stock, in SKU order."""
    products = Product.objects.select_related("stock").order_by("sku")
    return products if include_inactive else products.filter(active=True)


def product_get(*, sku: str, include_inactive: bool = False) -> Product:
    """Return one product with its stock, or raise ProductNotFound."""
    if not SKU_RE.fullmatch(sku):
        # Never send NUL bytes or 10 kB of junk to the database as a lookup.
        raise ProductNotFound(sku=sku[:64])
    try:
        return product_list(include_inactive=include_inactive).get(sku=sku)
    except Product.DoesNotExist:
        raise ProductNotFound(sku=sku) from None


def stock_available(*, product_id: int) -> int:
    """Return on_hand - reserved as the database has it now."""
    stock = Stock.objects.only("on_hand", "reserved").get(product_id=product_id)
    return stock.available


def reservation_get(
    *, reservation_id: uuid.UUID | str, viewer: AbstractBaseUser
) -> Reservation:
    """Return a reservation the viewer may see (their own; staff: any), else 404."""
    reservations = Reservation.objects.select_related("product")
    if not viewer.is_staff:
        reservations = reservations.filter(owner=viewer)
    try:
        return reservations.get(pk=reservation_id)
    except (Reservation.DoesNotExist, ValueError):
        raise ReservationNotFound(id=str(reservation_id)) from None
