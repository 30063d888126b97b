"""Rows the tests need, made through the services wherever a service makes them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def user_create(*, staff: bool = False):
    """A user with a unique name and an unguessable password."""
    name = f"user-{uuid.uuid4().hex[:8]}"
    return get_user_model().objects.create_user(
        username=name, password=uuid.uuid4().hex, is_staff=staff
    )


def token_client(user) -> APIClient:
    """An API test client authenticated with the user's token."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def product_create(*, actor, on_hand: int = 100, sku: str | None = None):
    """A product with `on_hand` units restocked, its stock row loaded."""
    from apps.inventory import services
    from apps.inventory.models import Product

    sku = sku or f"SKU-{uuid.uuid4().hex[:10]}"
    services.product_create(sku=sku, name=f"Product {sku}")
    if on_hand:
        services.stock_restock(sku=sku, quantity=on_hand, actor=actor)
    return Product.objects.select_related("stock").get(sku=sku)


def reservation_expired(*, owner, product, quantity: int, number: int):
    """A reservation made by the service, past its deadline, with id UUID(int=number).

    The expiry sweep locks reservations in id order: a test that needs a given
    order chooses the ids.
    """
    from apps.inventory import services
    from apps.inventory.models import Reservation, StockMovement

    made = services.reservation_create(
        owner=owner, sku=product.sku, quantity=quantity
    ).reservation
    chosen = uuid.UUID(int=number)
    # One transaction: the ledger row's foreign key is checked at the commit.
    with transaction.atomic():
        Reservation.objects.filter(pk=made.pk).update(
            id=chosen, expires_at=timezone.now() - timedelta(minutes=1)
        )
        StockMovement.objects.filter(reservation_id=made.pk).update(
            reservation_id=chosen
        )
    return Reservation.objects.get(pk=chosen)
