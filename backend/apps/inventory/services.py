"""Inventory writes. Each runs in one transaction; stock changes are conditional
UPDATEs (never read-then-write), and every change writes a ledger row."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.db.models.functions import Now
from django.utils import timezone

from apps.core.exceptions import (
    IdempotencyKeyReused,
    InsufficientStock,
    ProductExists,
    ProductNotFound,
    ReservationExpired,
    ReservationLimitExceeded,
    ReservationNotActive,
    ReservationNotFound,
)
from apps.inventory import gate, metrics
from apps.inventory.models import Product, Reservation, Stock, StockMovement
from apps.inventory.selectors import product_get, stock_available

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 900
# First key of the advisory lock that serializes one owner's reservations.
OWNER_LOCK_NAMESPACE = 0x52455356  # "RESV"


@dataclass(frozen=True)
class ReservationResult:
    reservation: Reservation
    created: bool  # False: an idempotent replay of an earlier request


def product_create(*, sku: str, name: str, actor: AbstractBaseUser | None) -> Product:
    """Create a product with empty stock."""
    try:
        with transaction.atomic():
            product = Product.objects.create(sku=sku, name=name)
            Stock.objects.create(product=product, on_hand=0, reserved=0)
    except IntegrityError:
        raise ProductExists(sku=sku) from None
    transaction.on_commit(lambda: gate.gate_warm(sku=sku, available=0))
    return product_get(sku=sku, include_inactive=True)


def stock_restock(
    *, sku: str, quantity: int, actor: AbstractBaseUser | None
) -> Product:
    """Add units on hand; the gate gets them after the commit."""
    with transaction.atomic():
        product = product_get(sku=sku, include_inactive=True)
        updated = Stock.objects.filter(product=product).update(
            on_hand=F("on_hand") + quantity
        )
        if updated != 1:  # a product without its stock row: no ledger row for nothing
            raise RuntimeError(f"product {sku} has no stock row")
        StockMovement.objects.create(
            product=product,
            kind=StockMovement.Kind.RESTOCK,
            quantity=quantity,
            on_hand_delta=quantity,
            reserved_delta=0,
            actor=actor,
        )
        transaction.on_commit(lambda: gate.gate_give_back(sku=sku, quantity=quantity))
    return product_get(sku=sku, include_inactive=True)


def _fingerprint(*, sku: str, quantity: int, ttl_seconds: int) -> str:
    body = json.dumps(
        {"sku": sku, "quantity": quantity, "ttl_seconds": ttl_seconds}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(
    *, owner: AbstractBaseUser, key: str, fingerprint: str
) -> Reservation | None:
    existing = (
        Reservation.objects.select_related("product")
        .filter(owner=owner, idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(idempotency_key=key)
    return existing


def _admit(*, sku: str, quantity: int) -> tuple[Product, bool]:
    """Pass the Redis gate, then load the product.

    Returns the product and whether units were taken from the gate (to give back on
    failure). Sold-out traffic is refused by Redis alone, before any database work.
    """
    took = False
    try:
        decision = gate.gate_take(sku=sku, quantity=quantity)
        if decision.missing:
            # Unknown SKU, or a counter never warmed or lost: the database decides.
            product = product_get(sku=sku)
            gate.gate_warm(sku=sku, available=stock_available(product_id=product.pk))
            decision = gate.gate_take(sku=sku, quantity=quantity)
    except gate.GateUnavailable:
        gate.gate_record_fallback()
        return product_get(sku=sku), False
    if decision.missing:  # vanished again (flush, eviction): let the database decide
        gate.gate_record_fallback()
        return product_get(sku=sku), False
    if not decision.admitted:
        metrics.gate_decisions.labels(outcome="rejected").inc()
        metrics.reservations.labels(result="insufficient_stock").inc()
        raise InsufficientStock(
            sku=sku, requested=quantity, available=max(decision.counter, 0)
        )
    metrics.gate_decisions.labels(outcome="admitted").inc()
    took = True
    try:
        return product_get(sku=sku), took
    except ProductNotFound:
        # Deactivated after its counter was warmed: hand the units back.
        gate.gate_give_back(sku=sku, quantity=quantity)
        raise


def _owner_limit_check(*, owner: AbstractBaseUser, quantity: int) -> None:
    """Refuse a reservation that takes the owner above their limit of held units.

    Runs inside the reservation's transaction. The advisory lock serializes this
    owner's reservations only, so two concurrent requests cannot both pass the sum.
    """
    limit = settings.RESERVATION_MAX_UNITS_PER_OWNER
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [OWNER_LOCK_NAMESPACE, owner.pk & 0x7FFFFFFF],
            )
    held = (
        Reservation.objects.filter(
            owner=owner, status=Reservation.Status.ACTIVE, expires_at__gt=Now()
        ).aggregate(units=Sum("quantity"))["units"]
        or 0
    )
    if held + quantity > limit:
        metrics.reservations.labels(result="owner_limit").inc()
        raise ReservationLimitExceeded(limit=limit, held=held, requested=quantity)


def reservation_create(
    *,
    owner: AbstractBaseUser,
    sku: str,
    quantity: int,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    idempotency_key: str | None = None,
) -> ReservationResult:
    """Hold `quantity` units of an active product for `ttl_seconds`."""
    fingerprint = _fingerprint(sku=sku, quantity=quantity, ttl_seconds=ttl_seconds)
    if idempotency_key:
        existing = _replay(owner=owner, key=idempotency_key, fingerprint=fingerprint)
        if existing is not None:
            metrics.reservations.labels(result="replayed").inc()
            return ReservationResult(reservation=existing, created=False)

    product, took_from_gate = _admit(sku=sku, quantity=quantity)
    try:
        with transaction.atomic():
            _owner_limit_check(owner=owner, quantity=quantity)
            # The invariant lives here: one conditional UPDATE, so two requests can
            # never both see the same units as available.
            updated = Stock.objects.filter(
                product=product, on_hand__gte=F("reserved") + quantity
            ).update(reserved=F("reserved") + quantity)
            if not updated:
                raise InsufficientStock(
                    sku=sku,
                    requested=quantity,
                    available=max(stock_available(product_id=product.pk), 0),
                )
            reservation = Reservation.objects.create(
                product=product,
                owner=owner,
                quantity=quantity,
                expires_at=timezone.now() + timedelta(seconds=ttl_seconds),
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
            )
            StockMovement.objects.create(
                product=product,
                kind=StockMovement.Kind.RESERVE,
                quantity=quantity,
                on_hand_delta=0,
                reserved_delta=quantity,
                reservation=reservation,
                actor=owner,
            )
    except BaseException as exc:
        # Refused or failed in the database: the gate gets its units back.
        if took_from_gate:
            gate.gate_give_back(sku=sku, quantity=quantity)
        if isinstance(exc, InsufficientStock):
            metrics.reservations.labels(result="insufficient_stock").inc()
        if isinstance(exc, IntegrityError) and idempotency_key:
            # A concurrent request with the same key won the race: replay it.
            existing = _replay(
                owner=owner, key=idempotency_key, fingerprint=fingerprint
            )
            if existing is not None:
                return ReservationResult(reservation=existing, created=False)
        raise
    metrics.reservations.labels(result="created").inc()
    reservation.product = product
    return ReservationResult(reservation=reservation, created=True)


def _lock_reservations(
    ids: list[Any], *, viewer: AbstractBaseUser | None = None
) -> list[Reservation]:
    """Lock reservation rows in primary-key order (no deadlocks), evaluated now.

    With a viewer, only rows the viewer may act on (their own; staff: any).
    """
    rows = Reservation.objects.select_for_update(of=("self",)).select_related("product")
    if viewer is not None and not viewer.is_staff:
        rows = rows.filter(owner=viewer)
    return list(rows.filter(pk__in=ids).order_by("pk"))


def _release(
    *,
    reservation: Reservation,
    status: str,
    kind: str,
    actor: AbstractBaseUser | None,
) -> None:
    """Move an active reservation out of `reserved` (cancel or expiry)."""
    quantity = reservation.quantity
    updated = Stock.objects.filter(
        product_id=reservation.product_id, reserved__gte=quantity
    ).update(reserved=F("reserved") - quantity)
    if updated != 1:  # the CHECK constraints make this unreachable; fail loudly
        raise RuntimeError(f"stock of {reservation.product_id} lost reserved units")
    reservation.status = status
    reservation.save(update_fields=["status", "updated_at"])
    StockMovement.objects.create(
        product_id=reservation.product_id,
        kind=kind,
        quantity=quantity,
        on_hand_delta=0,
        reserved_delta=-quantity,
        reservation=reservation,
        actor=actor,
    )
    sku = reservation.product.sku
    transaction.on_commit(lambda: gate.gate_give_back(sku=sku, quantity=quantity))


def _locked_own(*, reservation_id: Any, actor: AbstractBaseUser) -> Reservation:
    try:
        locked = _lock_reservations([reservation_id], viewer=actor)
    except ValidationError:  # not a UUID
        locked = []
    if not locked:
        raise ReservationNotFound(id=str(reservation_id))
    return locked[0]


def reservation_confirm(*, reservation_id: Any, actor: AbstractBaseUser) -> Reservation:
    """Turn an active reservation into a sale: units leave reserved and on_hand."""
    expired = False
    with transaction.atomic():
        reservation = _locked_own(reservation_id=reservation_id, actor=actor)
        if reservation.status == Reservation.Status.EXPIRED:
            raise ReservationExpired(expires_at=reservation.expires_at.isoformat())
        if reservation.status != Reservation.Status.ACTIVE:
            raise ReservationNotActive(status=reservation.status)
        if reservation.expires_at <= timezone.now():
            # Release it now rather than leave it to the sweep, then refuse.
            _release(
                reservation=reservation,
                status=Reservation.Status.EXPIRED,
                kind=StockMovement.Kind.EXPIRE,
                actor=None,
            )
            expired = True
        else:
            quantity = reservation.quantity
            updated = Stock.objects.filter(
                product_id=reservation.product_id, reserved__gte=quantity
            ).update(on_hand=F("on_hand") - quantity, reserved=F("reserved") - quantity)
            if updated != 1:  # the CHECK constraints make this unreachable
                raise RuntimeError(
                    f"stock of {reservation.product_id} lost reserved units"
                )
            reservation.status = Reservation.Status.CONFIRMED
            reservation.save(update_fields=["status", "updated_at"])
            StockMovement.objects.create(
                product_id=reservation.product_id,
                kind=StockMovement.Kind.CONFIRM,
                quantity=quantity,
                on_hand_delta=-quantity,
                reserved_delta=-quantity,
                reservation=reservation,
                actor=actor,
            )
    if expired:
        raise ReservationExpired(expires_at=reservation.expires_at.isoformat())
    return reservation


def reservation_cancel(*, reservation_id: Any, actor: AbstractBaseUser) -> Reservation:
    """Give an active reservation's units back to available."""
    with transaction.atomic():
        reservation = _locked_own(reservation_id=reservation_id, actor=actor)
        if reservation.status != Reservation.Status.ACTIVE:
            raise ReservationNotActive(status=reservation.status)
        _release(
            reservation=reservation,
            status=Reservation.Status.CANCELLED,
            kind=StockMovement.Kind.CANCEL,
            actor=actor,
        )
    return reservation


def reservations_expire(*, batch_size: int = 500, now: Any = None) -> int:
    """Expire active reservations past their deadline, in batches; return the count.

    SKIP LOCKED lets several workers (or a confirm in progress) share the work
    without waiting on each other; each batch commits on its own.
    """
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Reservation.objects.select_for_update(skip_locked=True)
                .filter(status=Reservation.Status.ACTIVE, expires_at__lte=now)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return total
            for reservation in _lock_reservations(ids):
                _release(
                    reservation=reservation,
                    status=Reservation.Status.EXPIRED,
                    kind=StockMovement.Kind.EXPIRE,
                    actor=None,
                )
            total += len(ids)
            metrics.expired_reservations.inc(len(ids))
        logger.info("expired reservations batch", extra={"count": len(ids)})
