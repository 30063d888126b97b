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
@pytest.mark.parametrize(
    ("lookup", "values", "error", "message"),
    [
        # The placeholder never reaches the SQL, or reaches it twice: refused.
        (Q(active=True), {"sku": "CQ-A"}, RuntimeError, "'sku' appears 0 times"),
        (
            Q(sku=PLACEHOLDER) | Q(name=PLACEHOLDER),
            {"sku": "CQ-A"},
            RuntimeError,
            "'sku' appears 2 times",
        ),
        # Values that do not name exactly the placeholders: refused.
        (Q(sku=PLACEHOLDER), {"name": "CQ-A"}, TypeError, "placeholders are"),
        (Q(sku=PLACEHOLDER), {}, TypeError, "placeholders are"),
    ],
)
def test_a_statement_that_could_be_bound_wrongly_is_refused(
    lookup: Q, values: dict[str, str], error: type[Exception], message: str
) -> None:
    query = CompiledQuery(
        lambda sku: Product.objects.filter(lookup).values_list("sku"), sku=PLACEHOLDER
    )
    with pytest.raises(error, match=message):
        query.rows(**values)
