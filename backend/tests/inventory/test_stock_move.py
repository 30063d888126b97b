"""`_stock_move`: the one way stock changes, against real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.inventory import services
from apps.inventory.models import Stock, StockMovement

pytestmark = pytest.mark.django_db(transaction=True)


def stock_of(product) -> tuple[int, int]:
    stock = Stock.objects.get(product=product)
    return stock.on_hand, stock.reserved


def reserve(product, quantity: int, **options: bool) -> StockMovement | None:
    """Move `quantity` units of `product` to reserved, as a reservation does."""
    return services._stock_move(
        product_id=product.pk,
        kind=StockMovement.Kind.RESERVE,
        quantity=quantity,
        reserved_delta=quantity,
        actor=None,
        **options,
    )


def test_a_change_is_applied_and_recorded_in_one_ledger_row(make_product) -> None:
    product = make_product(on_hand=5)
    before = StockMovement.objects.count()

    with transaction.atomic():
        movement = reserve(product, 2)

    assert stock_of(product) == (5, 2)
    assert StockMovement.objects.count() == before + 1
    row = StockMovement.objects.get(pk=movement.pk)
    assert (row.kind, row.quantity, row.on_hand_delta, row.reserved_delta) == (
        "reserve",
        2,
        0,
        2,
    )


@pytest.mark.parametrize("update_last", [False, True])
def test_more_than_available_is_refused_when_refusable(
    make_product, update_last: bool
) -> None:
    product = make_product(on_hand=3)
    before = StockMovement.objects.count()

    with transaction.atomic():
        movement = reserve(product, 4, refusable=True, update_last=update_last)
        # Update first: nothing written. Update last: the rows written first are
        # the caller's to roll back.
        assert StockMovement.objects.count() == before + (1 if update_last else 0)
        transaction.set_rollback(True)

    assert movement is None
    assert stock_of(product) == (3, 0)


def test_releasing_more_than_reserved_raises(make_product) -> None:
    product = make_product(on_hand=3)
    before = StockMovement.objects.count()

    with (
        pytest.raises(RuntimeError, match="cancel of 1 refused"),
        transaction.atomic(),
    ):
        services._stock_move(
            product_id=product.pk,
            kind=StockMovement.Kind.CANCEL,
            quantity=1,
            reserved_delta=-1,
            actor=None,
        )

    assert stock_of(product) == (3, 0)
    assert StockMovement.objects.count() == before
