"""An inactive product is indistinguishable from an unknown SKU in every answer,
the reservation refused by the Redis gate included."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.inventory import gate, services
from apps.inventory.models import Product

pytestmark = pytest.mark.django_db(transaction=True)


def _change_product(admin_client: Client, product: Product, *, active: bool) -> None:
    form = {
        "name": product.name,
        "stock-TOTAL_FORMS": "1",
        "stock-INITIAL_FORMS": "1",
        "stock-MIN_NUM_FORMS": "0",
        "stock-MAX_NUM_FORMS": "1",
        "stock-0-product": str(product.pk),
    }
    if active:
        form["active"] = "on"
    url = reverse("admin:inventory_product_change", args=[product.pk])
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]


def _answers(client, sku: str) -> list[tuple[int, dict]]:
    """Reserve more than is left (the gate's refusal), one unit (the gate's
    admission), and read the detail."""
    answers = []
    for quantity in (6, 1):
        response = client.post(
            "/api/v1/reservations/", {"sku": sku, "quantity": quantity}, format="json"
        )
        answers.append((response.status_code, response.json()["error"]))
    response = client.get(f"/api/v1/products/{sku}/")
    answers.append((response.status_code, response.json()["error"]))
    return answers


def _not_found(sku: str) -> list[tuple[int, dict]]:
    error = {
        "code": "product_not_found",
        "message": "No active product has this SKU.",
        "details": {"sku": sku},
    }
    return [(404, error)] * 3


def test_inactive_product_stock_does_not_leak_through_the_gate(
    admin_client, client_for, user, make_product
) -> None:
    """Deactivated in the admin: a reservation's 409 no longer tells `available`."""
    product = make_product(on_hand=5)
    client = client_for(user)
    assert gate.gate_read(sku=product.sku) == 5
    _change_product(admin_client, product, active=False)
    assert _answers(client, product.sku) == _not_found(product.sku)
    # Word for word what an unknown SKU gets.
    assert _answers(client, "NEVER-EXISTED") == _not_found("NEVER-EXISTED")
    assert gate.gate_read(sku=product.sku) is None
    # Active again: the database warms the counter, and reservations are served.
    _change_product(admin_client, product, active=True)
    created = client.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": 1}, format="json"
    )
    assert created.status_code == 201
    assert gate.gate_read(sku=product.sku) == 4


def test_reconciliation_removes_the_counter_of_a_product_deactivated_elsewhere(
    client_for, user, make_product
) -> None:
    """Deactivated outside the admin (SQL): gone from the gate at the next
    reconciliation, and from then on answered as unknown."""
    product = make_product(on_hand=5)
    active = make_product(on_hand=3)
    Product.objects.filter(pk=product.pk).update(active=False)
    assert services.inventory_gate_reconcile() == 1
    assert gate.gate_read(sku=product.sku) is None
    assert gate.gate_read(sku=active.sku) == 3
    assert _answers(client_for(user), product.sku) == _not_found(product.sku)
    # Nothing left to repair, and the counter stays away.
    assert services.inventory_gate_reconcile() == 0
    assert gate.gate_read(sku=product.sku) is None
