"""Inventory reads."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import router
from django.db.models import QuerySet

from apps.core.db.compiled import CompiledQuery
from apps.inventory.errors import ProductNotFound, ReservationNotFound
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


# Stands for the SKU in the compiled statements below; never a valid SKU.
_SKU_PLACEHOLDER = "\x00sku"

_PRODUCT_DETAIL = {
    include_inactive: CompiledQuery(
        lambda sku, include_inactive=include_inactive: (
            product_list(include_inactive=include_inactive)
            .filter(sku=sku)
            .order_by()
            .values_list("sku", "name", "active", "stock__on_hand", "stock__reserved")
        ),
        sku=_SKU_PLACEHOLDER,
    )
    for include_inactive in (False, True)
}


def product_detail(*, sku: str, include_inactive: bool = False) -> dict[str, Any]:
    """Return one product's API representation (ProductOutput's fields), or raise
    ProductNotFound.

    The most frequent read of the API: its statement is compiled once per process
    (building and compiling the query cost more than running it).
    """
    if not SKU_RE.fullmatch(sku):
        raise ProductNotFound(sku=sku[:64])
    row = _PRODUCT_DETAIL[include_inactive].first(
        using=router.db_for_read(Product), sku=sku
    )
    if row is None:
        raise ProductNotFound(sku=sku)
    sku, name, active, on_hand, reserved = row
    return {
        "sku": sku,
        "name": name,
        "active": active,
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
    }


_PRODUCT_FIELDS = tuple(field.attname for field in Product._meta.concrete_fields)
_RESERVABLE_PRODUCT = CompiledQuery(
    lambda sku: (
        Product.objects.filter(sku=sku, active=True)
        .order_by()
        .values_list(*_PRODUCT_FIELDS)
    ),
    sku=_SKU_PLACEHOLDER,
)


def product_reservable_get(*, sku: str) -> Product:
    """Return an active product without its stock (what a reservation refers to),
    or raise ProductNotFound.

    Read inside every accepted reservation's transaction: one compiled statement,
    on the connection that writes the reservation.
    """
    if not SKU_RE.fullmatch(sku):
        raise ProductNotFound(sku=sku[:64])
    using = router.db_for_write(Product)
    row = _RESERVABLE_PRODUCT.first(using=using, sku=sku)
    if row is None:
        raise ProductNotFound(sku=sku)
    return Product.from_db(using, _PRODUCT_FIELDS, row)


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
