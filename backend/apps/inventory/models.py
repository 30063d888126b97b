"""Inventory data: products, stock, reservations and the stock ledger.

The database is the truth. Its CHECK constraints hold the invariant
`0 <= reserved <= on_hand` on their own, whatever Redis says.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
RESERVATION_MAX_QUANTITY = 1000
# How long a reservation holds its units when the request names no ttl_seconds.
RESERVATION_DEFAULT_TTL_SECONDS = 900
RESERVATION_MAX_TTL_SECONDS = 3600
# Units an owner took count against RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR this long.
RESERVATION_OWNER_WINDOW_SECONDS = 3600


class Product(models.Model):
    sku = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(SKU_PATTERN, "1-64 characters of A-Z a-z 0-9 . _ -")
        ],
    )
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(
                condition=Q(sku__regex=SKU_PATTERN), name="product_sku_format"
            )
        ]

    def __str__(self) -> str:
        return self.sku


class Stock(models.Model):
    """Units on hand and units held by active reservations, for one product."""

    product = models.OneToOneField(
        Product, on_delete=models.PROTECT, primary_key=True, related_name="stock"
    )
    on_hand = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(on_hand__gte=0), name="stock_on_hand_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_reserved_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")),
                name="stock_reserved_lte_on_hand",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.on_hand} on hand, {self.reserved} reserved"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Reservation(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reservations"
    )
    quantity = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(RESERVATION_MAX_QUANTITY)]
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    expires_at = models.DateTimeField()
    # NULL, not "": the per-owner unique constraint applies only to given keys.
    idempotency_key = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True
    )
    # Hash of the request that created it: a replayed key must carry the same request.
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            # Selling is a decision: the storefront's backend after payment (and
            # staff), never a reservation's owner by virtue of owning it.
            ("confirm_reservation", "Can confirm any reservation (sell its units)"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1)
                & Q(quantity__lte=RESERVATION_MAX_QUANTITY),
                name="reservation_quantity_range",
            ),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="reservation_idempotency_key_per_owner",
            ),
        ]
        indexes = [
            # The expiry sweep: active reservations by deadline.
            models.Index(
                fields=["expires_at"],
                condition=Q(status="active"),
                name="reservation_active_expiry",
            ),
            # The owner limits: one owner's reservations of the last hour.
            models.Index(
                fields=["owner", "created_at"], name="reservation_owner_recent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.quantity} x {self.product_id} ({self.status})"


class StockMovement(models.Model):
    """One row per change of on_hand or reserved: the ledger explains every number."""

    class Kind(models.TextChoices):
        RESTOCK = "restock"
        RESERVE = "reserve"
        CONFIRM = "confirm"
        CANCEL = "cancel"
        EXPIRE = "expire"

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.PositiveIntegerField()
    on_hand_delta = models.BigIntegerField()
    reserved_delta = models.BigIntegerField()
    reservation = models.ForeignKey(
        Reservation, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["product", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity} x {self.product_id}"
