"""Inventory writes. Each runs in one transaction; stock changes are conditional
UPDATEs (never read-then-write), and every change writes a ledger row."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, router, transaction
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from apps.core.db.compiled import CompiledInsert, CompiledQuery, update_query
from apps.inventory import gate, metrics
from apps.inventory.errors import (
    ConfirmNotAllowed,
    IdempotencyKeyReused,
    InsufficientStock,
    ProductExists,
    ReservationExpired,
    ReservationLimitExceeded,
    ReservationNotActive,
    ReservationNotFound,
    ReservationRateExceeded,
)
from apps.inventory.models import (
    RESERVATION_DEFAULT_TTL_SECONDS,
    RESERVATION_MAX_TTL_SECONDS,
    RESERVATION_OWNER_WINDOW_SECONDS,
    Product,
    Reservation,
    Stock,
    StockMovement,
)
from apps.inventory.selectors import (
    product_get,
    product_reservable_get,
    stock_available,
)

logger = logging.getLogger(__name__)

# First key of the advisory lock that serializes one owner's reservations.
OWNER_LOCK_NAMESPACE = 0x52455356  # "RESV"


@dataclass(frozen=True)
class ReservationResult:
    reservation: Reservation
    created: bool  # False: an idempotent replay of an earlier request


def product_create(*, sku: str, name: str) -> Product:
    """Create a product with empty stock.

    No actor: the ledger (StockMovement) records changes of stock, and a new
    product has none; its first restock records who added the units.
    """
    try:
        with transaction.atomic():
            product = Product.objects.create(sku=sku, name=name)
            Stock.objects.create(product=product, on_hand=0, reserved=0)
    except IntegrityError:
        raise ProductExists(sku=sku) from None
    transaction.on_commit(lambda: gate.gate_warm(sku=sku, available=0))
    return product_get(sku=sku, include_inactive=True)


def product_update(*, product: Product) -> Product:
    """Save an edited product (name, active); an inactive one loses its gate counter
    after the commit, so that it answers like an unknown SKU everywhere."""
    with transaction.atomic():
        product.save()
        if not product.active:
            sku = product.sku
            transaction.on_commit(lambda: gate.gate_forget(skus=[sku]))
    return product


def stock_restock(
    *, sku: str, quantity: int, actor: AbstractBaseUser | None
) -> Product:
    """Add units on hand; the gate gets them after the commit."""
    with transaction.atomic():
        product = product_get(sku=sku, include_inactive=True)
        _stock_move(
            product_id=product.pk,
            kind=StockMovement.Kind.RESTOCK,
            quantity=quantity,
            on_hand_delta=quantity,
            actor=actor,
        )
        transaction.on_commit(lambda: gate.gate_give_back(sku=sku, quantity=quantity))
    return product_get(sku=sku, include_inactive=True)


# Where the compiled UPDATEs below take each call's values: distinct, positive (a
# negative one would be outside a PositiveIntegerField's range, and Django drops a
# comparison that cannot fail) and within a 32-bit integer.
_STOCK_PLACEHOLDERS = {
    "product_id": 0x7EADBE01,
    "on_hand_delta": 0x7EADBE02,
    "reserved_delta": 0x7EADBE03,
    "available_needed": 0x7EADBE04,
    "reserved_needed": 0x7EADBE05,
}


def _stock_update_rows(
    product_id: int,
    on_hand_delta: int | None = None,
    reserved_delta: int | None = None,
    available_needed: int | None = None,
    reserved_needed: int | None = None,
) -> UpdateQuery:
    """The UPDATE of one stock row: each given delta applied, each given need
    checked (see `_stock_update`)."""
    rows = Stock.objects.filter(product_id=product_id)
    if available_needed is not None:
        rows = rows.filter(on_hand__gte=F("reserved") + available_needed)
    if reserved_needed is not None:
        rows = rows.filter(reserved__gte=reserved_needed)
    changes = {}
    if on_hand_delta is not None:
        changes["on_hand"] = F("on_hand") + on_hand_delta
    if reserved_delta is not None:
        changes["reserved"] = F("reserved") + reserved_delta
    return update_query(rows, **changes)


# One compiled UPDATE per shape of change (which deltas, which checks), made when
# first needed: a few shapes exist (reserve, release, confirm, restock).
_STOCK_UPDATES: dict[frozenset[str], CompiledQuery] = {}


def _stock_update(*, product_id: int, on_hand_delta: int, reserved_delta: int) -> bool:
    """Change one stock row by the deltas unless that breaks its CHECK constraints;
    return whether it changed.

    One conditional UPDATE (never read-then-write): two requests can never both
    see the same units. Only the conditions a change can break are written: fewer
    available units (on_hand >= reserved + what leaves available) and fewer
    reserved ones (reserved >= what leaves reserved); on_hand >= 0 follows from
    both. It locks the stock row, which every buyer of the SKU queues on, until the
    transaction ends.
    """
    values = {"product_id": product_id}
    if reserved_delta > on_hand_delta:
        values["available_needed"] = reserved_delta - on_hand_delta
    if reserved_delta < 0:
        values["reserved_needed"] = -reserved_delta
    if on_hand_delta:
        values["on_hand_delta"] = on_hand_delta
    if reserved_delta:
        values["reserved_delta"] = reserved_delta
    shape = frozenset(values)
    statement = _STOCK_UPDATES.get(shape)
    if statement is None:
        statement = _STOCK_UPDATES.setdefault(
            shape,
            CompiledQuery(
                _stock_update_rows,
                **{name: _STOCK_PLACEHOLDERS[name] for name in shape},
            ),
        )
    return statement.rowcount(using=router.db_for_write(Stock), **values) == 1


_RESERVATION_INSERT = CompiledInsert(Reservation)
_MOVEMENT_INSERT = CompiledInsert(StockMovement)


def _stock_move(
    *,
    product_id: int,
    kind: str,
    quantity: int,
    on_hand_delta: int = 0,
    reserved_delta: int = 0,
    actor: AbstractBaseUser | None,
    reservation: Reservation | Callable[[], Reservation] | None = None,
    refusable: bool = False,
    update_last: bool = False,
) -> StockMovement | None:
    """Change a product's stock and write the ledger row that records the change.

    `reservation` is the one the movement belongs to, or a function writing a new
    one (called next to the ledger row, so a refused change writes neither when
    the UPDATE goes first). A refused change returns None if `refusable` (too few
    units: the caller's answer), else raises: a missing stock row, or a CHECK the
    caller's own lock already guarantees. `update_last` writes the rows first and
    takes the stock row's lock last, for one statement and the commit; a refusal
    then leaves rows the caller's rollback removes.
    """

    def record() -> StockMovement:
        owner = reservation() if callable(reservation) else reservation
        return _MOVEMENT_INSERT.save(
            StockMovement(
                product_id=product_id,
                kind=kind,
                quantity=quantity,
                on_hand_delta=on_hand_delta,
                reserved_delta=reserved_delta,
                reservation=owner,
                actor=actor,
            )
        )

    movement = record() if update_last else None
    updated = _stock_update(
        product_id=product_id,
        on_hand_delta=on_hand_delta,
        reserved_delta=reserved_delta,
    )
    if not updated:
        if refusable:
            return None
        raise RuntimeError(
            f"{kind} of {quantity} refused for product {product_id}: no stock row, "
            "or its CHECK constraints (unreachable under the caller's lock)"
        )
    return movement or record()


def _fingerprint(*, sku: str, quantity: int, ttl_seconds: int) -> str:
    body = json.dumps(
        {"sku": sku, "quantity": quantity, "ttl_seconds": ttl_seconds}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


# An owner id and an Idempotency-Key no request has: where the compiled statements
# below take each call's values.
_OWNER_PLACEHOLDER = -0x7EADBEEF
_KEY_PLACEHOLDER = "\x00key"

_IDEMPOTENT_RESERVATION = CompiledQuery(
    lambda owner_id, key: (
        Reservation.objects.filter(owner_id=owner_id, idempotency_key=key)
        .order_by()
        .values_list("pk", "request_fingerprint")
    ),
    owner_id=_OWNER_PLACEHOLDER,
    key=_KEY_PLACEHOLDER,
)


def _replay(
    *, owner: AbstractBaseUser, key: str, fingerprint: str
) -> Reservation | None:
    """The owner's reservation made with `key`, if any; refuse a key reused for a
    different request.

    Nearly every key is new: the lookup is one compiled statement, and only a replay
    loads the reservation through the ORM.
    """
    row = _IDEMPOTENT_RESERVATION.first(owner_id=owner.pk, key=key)
    if row is None:
        return None
    reservation_id, seen_fingerprint = row
    if seen_fingerprint != fingerprint:
        raise IdempotencyKeyReused(idempotency_key=key)
    return Reservation.objects.select_related("product").get(pk=reservation_id)


def _admit(*, sku: str, quantity: int) -> tuple[Product | None, bool]:
    """Pass the Redis gate; return the product if it was loaded, and whether units
    were taken from the gate.

    Sold-out traffic is refused by Redis alone, before any database work. Nothing
    here runs after a successful take: the caller owns giving the units back.
    """
    try:
        decision = gate.gate_take(sku=sku, quantity=quantity)
        if decision.missing:
            # Unknown SKU, or a counter never warmed or lost: the database decides.
            product = product_get(sku=sku)
            gate.gate_warm(sku=sku, available=stock_available(product_id=product.pk))
            decision = gate.gate_take(sku=sku, quantity=quantity)
            if decision.admitted:
                metrics.gate_decisions.labels(outcome="admitted").inc()
                return product, True
    except gate.GateUnavailable:
        gate.gate_record_fallback()
        return None, False
    if decision.missing:  # vanished again (flush, eviction): let the database decide
        gate.gate_record_fallback()
        return None, False
    if not decision.admitted:
        metrics.gate_decisions.labels(outcome="rejected").inc()
        metrics.reservations.labels(result="insufficient_stock").inc()
        raise InsufficientStock(
            sku=sku, requested=quantity, available=max(decision.counter, 0)
        )
    metrics.gate_decisions.labels(outcome="admitted").inc()
    return None, True


def _lock_idempotency_key(*, owner: AbstractBaseUser, key: str) -> None:
    """Serialize requests of one owner with one key until this transaction ends.

    A retry sent while the first request is still running waits here, then finds
    its reservation and replays it, instead of competing with it for the units.
    """
    if connection.vendor != "postgresql":
        # SQLite (make run) has no advisory locks; it runs one writer at a time,
        # and the (owner, key) unique constraint refuses a second row.
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"reservation-idempotency:{owner.pk}:{key}"],
        )


def _lock_owner(*, owner: AbstractBaseUser) -> datetime:
    """Serialize this owner's reservations until the transaction ends; return the
    database's clock.

    The clock is the one expiry and confirm compare with, so a skewed container
    clock cannot shorten or stretch a reservation. PostgreSQL's now() is the
    transaction's start, the same in every statement of it, so it is read here,
    with the lock, at no extra round trip.
    """
    if connection.vendor != "postgresql":
        # SQLite (make run): one process, one clock, no concurrent writers.
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s), now()",
            [OWNER_LOCK_NAMESPACE, owner.pk & 0x7FFFFFFF],
        )
        return cursor.fetchone()[1]


def _owner_units(owner_id: int) -> QuerySet[Reservation]:
    """The units one owner holds now and reserved in the last hour (one row, or none
    without recent reservations): an active reservation is never older than the
    longest TTL, so both sums read the owner's recent rows only (index
    reservation_owner_recent)."""
    since = Now() - timedelta(
        seconds=max(RESERVATION_OWNER_WINDOW_SECONDS, RESERVATION_MAX_TTL_SECONDS)
    )
    window_start = Now() - timedelta(seconds=RESERVATION_OWNER_WINDOW_SECONDS)
    return (
        Reservation.objects.filter(owner_id=owner_id, created_at__gte=since)
        .order_by()
        .values("owner_id")
        .annotate(
            held=Sum(
                "quantity",
                filter=Q(status=Reservation.Status.ACTIVE, expires_at__gt=Now()),
            ),
            recent=Sum("quantity", filter=Q(created_at__gte=window_start)),
        )
        .values_list("held", "recent")
    )


_OWNER_UNITS = CompiledQuery(_owner_units, owner_id=_OWNER_PLACEHOLDER)


def _owner_limit_check(*, owner: AbstractBaseUser, quantity: int) -> None:
    """Refuse a reservation that takes the owner above their limit of held units,
    or above the units they may reserve per hour.

    The hourly limit counts every reservation made in the last hour, whatever
    became of it: without it, reserve -> let expire (or cancel) -> reserve again
    holds a product for good. Runs inside the reservation's transaction, after
    `_lock_owner`, so two concurrent requests of one owner cannot both pass.
    """
    limit = settings.RESERVATION_MAX_UNITS_PER_OWNER
    hourly = settings.RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR
    row = _OWNER_UNITS.first(owner_id=owner.pk)
    held, recent = (row[0] or 0, row[1] or 0) if row else (0, 0)
    if held + quantity > limit:
        metrics.reservations.labels(result="owner_limit").inc()
        raise ReservationLimitExceeded(limit=limit, held=held, requested=quantity)
    if recent + quantity > hourly:
        metrics.reservations.labels(result="owner_rate").inc()
        raise ReservationRateExceeded(limit=hourly, reserved=recent, requested=quantity)


def _reservation_record(
    *,
    product: Product,
    owner: AbstractBaseUser,
    quantity: int,
    expires_at: datetime,
    idempotency_key: str | None,
    fingerprint: str,
) -> Reservation:
    """Write the reservation row (its stock change and ledger row: `_stock_move`)."""
    return _RESERVATION_INSERT.save(
        Reservation(
            product=product,
            owner=owner,
            quantity=quantity,
            expires_at=expires_at,
            idempotency_key=idempotency_key or None,
            request_fingerprint=fingerprint,
        ),
    )


def reservation_create(
    *,
    owner: AbstractBaseUser,
    sku: str,
    quantity: int,
    ttl_seconds: int = RESERVATION_DEFAULT_TTL_SECONDS,
    idempotency_key: str | None = None,
) -> ReservationResult:
    """Hold `quantity` units of an active product for `ttl_seconds`."""
    fingerprint = _fingerprint(sku=sku, quantity=quantity, ttl_seconds=ttl_seconds)
    taken = 0  # units taken from the gate, given back unless the commit succeeds
    try:
        # With a key, the whole request is one transaction holding the key's lock.
        # Without one, the gate decides before any transaction begins, so sold-out
        # traffic never touches the database.
        with transaction.atomic() if idempotency_key else nullcontext():
            if idempotency_key:
                _lock_idempotency_key(owner=owner, key=idempotency_key)
                existing = _replay(
                    owner=owner, key=idempotency_key, fingerprint=fingerprint
                )
                if existing is not None:
                    metrics.reservations.labels(result="replayed").inc()
                    return ReservationResult(reservation=existing, created=False)
            product, took = _admit(sku=sku, quantity=quantity)
            taken = quantity if took else 0
            with transaction.atomic(savepoint=False):
                if product is None:
                    product = product_reservable_get(sku=sku)
                now = _lock_owner(owner=owner)
                _owner_limit_check(owner=owner, quantity=quantity)
                record = partial(
                    _reservation_record,
                    product=product,
                    owner=owner,
                    quantity=quantity,
                    expires_at=now + timedelta(seconds=ttl_seconds),
                    idempotency_key=idempotency_key,
                    fingerprint=fingerprint,
                )
                movement = _stock_move(
                    product_id=product.pk,
                    kind=StockMovement.Kind.RESERVE,
                    quantity=quantity,
                    reserved_delta=quantity,
                    actor=owner,
                    reservation=record,
                    refusable=True,
                    # The gate admitted, so the stock UPDATE nearly always succeeds:
                    # write the rows first and take the stock row's lock last, held
                    # for one statement and the commit instead of three (a refusal
                    # rolls the rows back). Without the gate, a sell-out's refusals
                    # are most requests: the UPDATE goes first.
                    update_last=took,
                )
                if movement is None:
                    metrics.reservations.labels(result="insufficient_stock").inc()
                    raise InsufficientStock(
                        sku=sku,
                        requested=quantity,
                        available=max(stock_available(product_id=product.pk), 0),
                    )
    except BaseException:
        # Anything after the take that did not commit (a refusal, an unknown or
        # inactive SKU, a database error): the gate gets its units back. A process
        # killed here leaves the counter low until the reconciliation repairs it.
        if taken:
            gate.gate_give_back(sku=sku, quantity=taken)
        raise
    metrics.reservations.labels(result="created").inc()
    reservation = movement.reservation
    reservation.product = product
    return ReservationResult(reservation=reservation, created=True)


def _lock_reservations(
    ids: list[Any], *, viewer: AbstractBaseUser | None = None
) -> list[Reservation]:
    """Lock reservation rows in primary-key order (no deadlocks), evaluated now.

    With a viewer, only rows the viewer may act on (their own; staff: any).
    """
    rows = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("product")
        # Past its deadline by the database's clock, the one expiry compares with.
        .annotate(
            past_deadline=ExpressionWrapper(
                Q(expires_at__lte=Now()), output_field=BooleanField()
            )
        )
    )
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
    reservation.status = status
    reservation.save(update_fields=["status", "updated_at"])
    _stock_move(
        product_id=reservation.product_id,
        kind=kind,
        quantity=quantity,
        reserved_delta=-quantity,
        actor=actor,
        reservation=reservation,
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


def _locked_any(*, reservation_id: Any) -> Reservation:
    try:
        locked = _lock_reservations([reservation_id])
    except ValidationError:  # not a UUID
        locked = []
    if not locked:
        raise ReservationNotFound(id=str(reservation_id))
    return locked[0]


def reservation_confirm_allowed(*, actor: AbstractBaseUser) -> bool:
    """Whether `actor` may sell: staff, or an account holding
    inventory.confirm_reservation (the storefront's backend, after payment)."""
    return bool(actor.is_staff or actor.has_perm("inventory.confirm_reservation"))


def reservation_confirm(*, reservation_id: Any, actor: AbstractBaseUser) -> Reservation:
    """Turn an active reservation into a sale: units leave reserved and on_hand.

    Only a confirmer (reservation_confirm_allowed) may, for any owner's
    reservation: an owner confirming their own could take every unit of a product,
    one reservation after another.
    """
    if not reservation_confirm_allowed(actor=actor):
        raise ConfirmNotAllowed()
    expired = False
    with transaction.atomic():
        reservation = _locked_any(reservation_id=reservation_id)
        if reservation.status == Reservation.Status.EXPIRED:
            raise ReservationExpired(expires_at=reservation.expires_at.isoformat())
        if reservation.status != Reservation.Status.ACTIVE:
            raise ReservationNotActive(status=reservation.status)
        if reservation.past_deadline:
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
            reservation.status = Reservation.Status.CONFIRMED
            reservation.save(update_fields=["status", "updated_at"])
            _stock_move(
                product_id=reservation.product_id,
                kind=StockMovement.Kind.CONFIRM,
                quantity=quantity,
                on_hand_delta=-quantity,
                reserved_delta=-quantity,
                actor=actor,
                reservation=reservation,
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


def reservations_expire(*, batch_size: int = 500) -> int:
    """Expire active reservations past their deadline, in batches; return the count.

    SKIP LOCKED lets several workers (or a confirm in progress) share the work
    without waiting on each other; each batch commits on its own.
    """
    total = 0
    while released := _expire_batch(batch_size=batch_size):
        total += released
        logger.info("expired reservations batch", extra={"count": released})
    return total


def _expire_batch(*, batch_size: int) -> int:
    with transaction.atomic():
        rows = list(
            # Only the reservation rows are locked, not the products joined in.
            Reservation.objects.select_for_update(skip_locked=True, of=("self",))
            # The database's clock: a worker whose clock runs ahead must not
            # expire reservations early.
            .filter(status=Reservation.Status.ACTIVE, expires_at__lte=Now())
            .order_by("pk")
            .values_list("pk", "product_id", "product__sku", "quantity")[:batch_size]
        )
        if not rows:
            return 0
        per_product: defaultdict[int, int] = defaultdict(int)
        skus: dict[int, str] = {}
        for _, product_id, sku, quantity in rows:
            per_product[product_id] += quantity
            skus[product_id] = sku
        # One UPDATE per stock row, in product order: a hot row is held for one
        # statement rather than one per reservation, and two sweeps lock the rows
        # they share in the same order, so they cannot deadlock.
        # (The batch form of `_stock_move`: its ledger rows are one bulk INSERT.)
        for product_id in sorted(per_product):
            quantity = per_product[product_id]
            if not _stock_update(
                product_id=product_id, on_hand_delta=0, reserved_delta=-quantity
            ):  # the CHECK constraints make this unreachable
                raise RuntimeError(f"stock of {product_id} lost reserved units")
        Reservation.objects.filter(pk__in=[pk for pk, _, _, _ in rows]).update(
            status=Reservation.Status.EXPIRED, updated_at=Now()
        )
        StockMovement.objects.bulk_create(
            StockMovement(
                product_id=product_id,
                kind=StockMovement.Kind.EXPIRE,
                quantity=quantity,
                on_hand_delta=0,
                reserved_delta=-quantity,
                reservation_id=pk,
            )
            for pk, product_id, _, quantity in rows
        )
        returns = {skus[product_id]: units for product_id, units in per_product.items()}

        def give_back() -> None:
            for sku, quantity in returns.items():
                gate.gate_give_back(sku=sku, quantity=quantity)

        transaction.on_commit(give_back)
        metrics.expired_reservations.inc(len(rows))
    return len(rows)


def _stocks_by_product(batch: int = 1000) -> Iterator[Stock]:
    """Every active product's stock row, in product order, a batch at a time.

    Keyset pages instead of `.iterator()`: a server-side cursor does not survive a
    transaction pooler, and a client-side one would hold every row at once.
    """
    last = None
    while True:
        page = (
            Stock.objects.filter(product__active=True)
            .select_related("product")
            .only("on_hand", "reserved", "product__sku")
        )
        if last is not None:
            page = page.filter(product_id__gt=last)
        rows = list(page.order_by("product_id")[:batch])
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1].pk


def inventory_gate_check_server() -> int:
    """Reconcile at once when Redis is another server than last time; return repairs.

    After a Sentinel failover the promoted replica may lack the last takes and
    give-backs, and a restarted Redis may lack every counter; the database path
    used meanwhile changed stock without the counters. Checked every few seconds
    (beat), so a failover is repaired promptly, not at the 10-minute run.
    """
    if not gate.gate_enabled():
        return 0
    try:
        changed, run_id = gate.gate_server_changed()
    except gate.GateUnavailable:
        return 0
    if not changed:
        return 0
    logger.warning(
        "inventory gate: Redis is another server (failover or restart); "
        "reconciling now",
        extra={"redis_run_id": run_id},
    )
    repairs = _gate_reconcile()
    if repairs is None:
        # Not reconciled here: another run holds the lock (perhaps one that began
        # against the previous server), or Redis failed. The server stays unmarked,
        # so the next check, seconds away, tries again.
        return 0
    with suppress(gate.GateUnavailable):
        gate.gate_server_mark(run_id=run_id)
    return repairs


def inventory_gate_reconcile() -> int:
    """Make every SKU's Redis counter equal the database's available; return repairs.

    One run at a time, fleet-wide (a Redis lock: a second run is skipped). Races
    with traffic may leave a counter too high (the database refuses the extra
    units; the next run repairs it), never too low.
    """
    return _gate_reconcile() or 0


def _gate_reconcile() -> int | None:
    """Reconcile every SKU; return the repairs, or None when this run did not
    complete (Redis unavailable, another run holding the lock, or this run's lease
    lost to another)."""
    if not gate.gate_enabled():
        return 0
    with ExitStack() as stack:
        try:
            lease = stack.enter_context(gate.gate_reconcile_lock())
        except gate.GateUnavailable as exc:
            logger.warning("reconciliation skipped, Redis unavailable: %s", exc)
            return None
        if lease is None:
            logger.info("reconciliation already running elsewhere; skipped")
            return None
        repairs = _gate_forget_inactive()
        for stock in _stocks_by_product():
            try:
                lease.keep()
            except gate.ReconcileLeaseLost:
                logger.warning(
                    "reconciliation stopped: its lock lapsed and may be another "
                    "run's now",
                    extra={"repairs": repairs},
                )
                return None
            # The snapshot only picks candidates: it may be older than the counter.
            sku = stock.product.sku
            if gate.gate_read(sku=sku) == stock.available:
                continue
            # The repair reads both again, counter first, and writes nothing if
            # traffic touched the counter meanwhile (see gate_repair).
            repair = gate.gate_repair(
                sku=sku,
                database_available=partial(stock_available, product_id=stock.pk),
            )
            if repair.repaired:
                repairs += 1
                metrics.reconcile_repairs.inc()
                logger.warning(
                    "reconciled inventory counter",
                    extra={
                        "sku": sku,
                        "redis_value": repair.redis_value,
                        "database_value": repair.database_value,
                    },
                )
    logger.info("reconciliation finished", extra={"repairs": repairs})
    return repairs


def _gate_forget_inactive(*, batch_size: int = 500) -> int:
    """Remove the counters of inactive products; return how many there were.

    A product deactivated outside the admin (SQL, `QuerySet.update`), or whose
    removal raced a warm-up, keeps a counter until here. Keyset pages, not
    `.iterator()`: a server-side cursor does not survive a transaction pooler.
    """
    removed = 0
    last_pk = 0
    while True:
        page = list(
            Product.objects.filter(active=False, pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", "sku")[:batch_size]
        )
        if not page:
            break
        last_pk = page[-1][0]
        removed += gate.gate_forget(skus=[sku for _, sku in page])
    if removed:
        metrics.reconcile_repairs.inc(removed)
        logger.warning(
            "removed inventory counters of inactive products", extra={"count": removed}
        )
    return removed


@dataclass(frozen=True)
class GateRebuild:
    removed: int  # counters deleted (any state Redis held)
    derived: int  # counters written from the database's available
    active_products: int
    # Active products left without a counter: the reconciliation was skipped (one
    # ran elsewhere). Traffic warms a missing counter too, so this reads 0 after a
    # run, also under traffic; a counter's value may differ by then.
    missing: int


def inventory_gate_rebuild() -> GateRebuild:
    """Re-derive every gate counter from PostgreSQL: delete them all, reconcile.

    For a restored database (or a Redis that outlived it): counters of products the
    backup lacks go, every active product's is written from its stock row. Raises
    GateUnavailable when Redis cannot be asked.
    """
    removed = gate.gate_counters_clear()
    derived = inventory_gate_reconcile()
    active = missing = 0
    for stock in _stocks_by_product():
        active += 1
        missing += gate.gate_read(sku=stock.product.sku) is None
    with suppress(gate.GateUnavailable):
        _, run_id = gate.gate_server_changed()
        gate.gate_server_mark(run_id=run_id)
    return GateRebuild(
        removed=removed, derived=derived, active_products=active, missing=missing
    )


@dataclass(frozen=True)
class PendingReservations:
    count: int
    units: int
    next_deadline: datetime | None


def reservations_pending_read() -> PendingReservations:
    """Active reservations still inside their deadline (by the database's clock).

    Their expiry needs nothing in Redis: beat's sweep (inventory.expire_reservations,
    every minute) releases every active reservation whose expires_at has passed, so
    a restored one expires at its deadline plus at most one sweep interval.
    """
    pending = Reservation.objects.filter(
        status=Reservation.Status.ACTIVE, expires_at__gt=Now()
    ).aggregate(count=Count("pk"), units=Sum("quantity"), next=Min("expires_at"))
    return PendingReservations(
        count=pending["count"],
        units=pending["units"] or 0,
        next_deadline=pending["next"],
    )
