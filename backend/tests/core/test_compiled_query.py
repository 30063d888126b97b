"""Querysets compiled once per process: each call's values, the queryset's rows."""

from __future__ import annotations

import pytest
from django.db.models import Q

from apps.core.db.compiled import CompiledQuery
from apps.inventory.models import Product

PLACEHOLDER = "\x00sku"


def products(*skus: str) -> None:
    for index, sku in enumerate(skus):
        Product.objects.create(sku=sku, name=f"Product {index}", active=index % 2 == 0)


@pytest.mark.django_db
def test_each_call_gets_the_rows_the_queryset_would_with_its_values() -> None:
    products("CQ-A", "CQ-B", "CQ-C")
    query = CompiledQuery(
        lambda sku, name: (
            Product.objects.filter(sku__gte=sku, name__lte=name)
            .order_by("sku")
            .values_list("sku", "active")
        ),
        sku=PLACEHOLDER,
        name="\x00name",
    )
    calls = [("CQ-A", "Product 9"), ("CQ-B", "Product 1"), ("CQ-A", "Product 0")]
    for sku, name in [*calls, ("CQ-D", "Product 9")]:
        expected = list(
            Product.objects.filter(sku__gte=sku, name__lte=name)
            .order_by("sku")
            .values_list("sku", "active")
        )
        assert query.rows(sku=sku, name=name) == expected
    assert query.rows(sku="CQ-B", name="Product 9") == [("CQ-B", False), ("CQ-C", True)]
    assert query.first(sku="CQ-A", name="Product 0") == ("CQ-A", True)
    assert query.first(sku="CQ-D", name="Product 9") is None


@pytest.mark.django_db
def test_a_placeholder_absent_or_repeated_in_the_sql_is_refused() -> None:
    absent = CompiledQuery(
        lambda sku: Product.objects.filter(active=True).values_list("sku"),
        sku=PLACEHOLDER,
    )
    with pytest.raises(RuntimeError, match="placeholder 'sku' appears 0 times"):
        absent.rows(sku="CQ-A")
    repeated = CompiledQuery(
        lambda sku: Product.objects.filter(Q(sku=sku) | Q(name=sku)).values_list("sku"),
        sku=PLACEHOLDER,
    )
    with pytest.raises(RuntimeError, match="placeholder 'sku' appears 2 times"):
        repeated.rows(sku="CQ-A")


@pytest.mark.django_db
def test_values_must_name_exactly_the_placeholders() -> None:
    query = CompiledQuery(
        lambda sku: Product.objects.filter(sku=sku).values_list("sku"),
        sku=PLACEHOLDER,
    )
    with pytest.raises(TypeError, match="placeholders are"):
        query.rows(name="CQ-A")
    with pytest.raises(TypeError, match="placeholders are"):
        query.rows()
