"""The admin creates products through the service; stock UPDATEs check row counts."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.inventory import gate, services
from apps.inventory.models import Product, Stock, StockMovement

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_add_creates_the_stock_row_and_warms_the_gate(admin_client) -> None:
    response = admin_client.post(
        reverse("admin:inventory_product_add"), {"sku": "ADMIN-1", "name": "Made here"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    product = Product.objects.get(sku="ADMIN-1")
    assert response["Location"] == reverse("admin:inventory_product_changelist")
    stock = Stock.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (0, 0)
    assert gate.gate_take(sku="ADMIN-1", quantity=1).missing is False

    # The product is usable at once: restock, then reserve.
    services.stock_restock(sku="ADMIN-1", quantity=3, actor=None)
    assert Stock.objects.get(product=product).on_hand == 3


def test_admin_add_form_has_no_stock_inline(admin_client) -> None:
    page = admin_client.get(reverse("admin:inventory_product_add")).content.decode()
    assert 'name="sku"' in page
    assert 'name="stock-TOTAL_FORMS"' not in page


def test_sku_is_read_only_after_creation(admin_client, make_product) -> None:
    product = make_product(on_hand=2, sku="FIXED-1")
    url = reverse("admin:inventory_product_change", args=[product.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="sku"' not in page
    assert "FIXED-1" in page
    response = admin_client.post(
        url,
        {
            "sku": "CHANGED-1",
            "name": "Renamed",
            "active": "on",
            "stock-TOTAL_FORMS": "1",
            "stock-INITIAL_FORMS": "1",
            "stock-MIN_NUM_FORMS": "0",
            "stock-MAX_NUM_FORMS": "1",
            "stock-0-product": str(product.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    product.refresh_from_db()
    assert (product.sku, product.name) == ("FIXED-1", "Renamed")


def test_restock_without_a_stock_row_writes_no_ledger_row() -> None:
    Product.objects.create(sku="ORPHAN-1", name="No stock row")
    with pytest.raises(RuntimeError, match="no stock row"):
        services.stock_restock(sku="ORPHAN-1", quantity=5, actor=None)
    assert StockMovement.objects.filter(product__sku="ORPHAN-1").count() == 0
    assert not Stock.objects.filter(product__sku="ORPHAN-1").exists()
