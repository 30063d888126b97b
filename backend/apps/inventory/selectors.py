"""Inventory reads."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, router
from django.db.models import QuerySet

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


# Stands for the SKU while the ORM compiles the detail query; never a valid SKU.
_SKU_PLACEHOLDER = "\x00sku"
_DETAIL_FIELDS = ("sku", "name", "active", "stock__on_hand", "stock__reserved")


@functools.cache
def _product_detail_sql(
    alias: str, vendor: str, include_inactive: bool
) -> tuple[str, tuple[Any, ...], int]:
    queryset = (
        product_list(include_inactive=include_inactive)
        .filter(sku=_SKU_PLACEHOLDER)
        .order_by()
        .values_list(*_DETAIL_FIELDS)
    )
    sql, params = queryset.query.get_compiler(alias).as_sql()
    return sql, tuple(params), params.index(_SKU_PLACEHOLDER)


def product_detail(*, sku: str, include_inactive: bool = False) -> dict[str, Any]:
    """Return one product's API representation (ProductOutput's fields), or raise
    ProductNotFound.

    The most frequent read of the API: the ORM compiles its SQL once per process
    (building and compiling the query cost more than running it), then each call
    runs that SQL with its SKU.
    """
    if not SKU_RE.fullmatch(sku):
        raise ProductNotFound(sku=sku[:64])
    connection = connections[router.db_for_read(Product)]
    sql, params, sku_index = _product_detail_sql(
        connection.alias, connection.vendor, include_inactive
    )
    bound = list(params)
    bound[sku_index] = sku
    with connection.cursor() as cursor:
        cursor.execute(sql, bound)
        row = cursor.fetchone()
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
