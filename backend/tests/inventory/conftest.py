"""Inventory fixtures: users with tokens, products with stock, a clean gate."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.inventory import gate, services
from apps.inventory.models import Product


@pytest.fixture(autouse=True)
def _closed_breaker():
    # A test that cut Redis must not leave the next one on the database path.
    gate.breaker.reset()
    yield
    gate.breaker.reset()


@pytest.fixture
def make_user(django_user_model) -> Callable[..., object]:
    def make(*, staff: bool = False):
        name = f"user-{uuid.uuid4().hex[:8]}"
        return django_user_model.objects.create_user(
            username=name, password=uuid.uuid4().hex, is_staff=staff
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def staff(make_user):
    return make_user(staff=True)


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def client_for() -> Callable[[object], APIClient]:
    return token_client


@pytest.fixture
def make_product(staff) -> Callable[..., Product]:
    def make(*, on_hand: int = 100, sku: str | None = None) -> Product:
        sku = sku or f"SKU-{uuid.uuid4().hex[:10]}"
        services.product_create(sku=sku, name=f"Product {sku}", actor=staff)
        if on_hand:
            services.stock_restock(sku=sku, quantity=on_hand, actor=staff)
        return Product.objects.select_related("stock").get(sku=sku)

    return make
