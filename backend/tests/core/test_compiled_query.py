"""Statements compiled once per process: each call's values, the rows and the
writes Django itself would give."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q, Value
from django.db.models.signals import pre_save
from django.test.utils import isolate_apps
from django.utils import timezone

from apps.core.db.compiled import CompiledInsert, CompiledQuery, update_query
from apps.inventory.models import Product, Reservation, StockMovement
from tests.support.factories import product_create, user_create

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


@pytest.mark.django_db
def test_an_update_changes_the_rows_queryset_update_would_and_counts_them() -> None:
    products("CQ-A", "CQ-B", "CQ-C")
    rename = CompiledQuery(
        lambda sku, suffix: update_query(
            Product.objects.filter(sku__gte=sku, active=True),
            name=models.functions.Concat(F("name"), Value(suffix)),
        ),
        sku=PLACEHOLDER,
        suffix="\x00suffix",
    )

    assert rename.rowcount(sku="CQ-A", suffix="!") == 2  # CQ-A and CQ-C are active
    assert rename.rowcount(sku="CQ-B", suffix="?") == 1
    assert rename.rowcount(sku="CQ-D", suffix="#") == 0
    assert dict(Product.objects.values_list("sku", "name")) == {
        "CQ-A": "Product 0!",
        "CQ-B": "Product 1",
        "CQ-C": "Product 2!?",
    }


@isolate_apps("apps.inventory")
def test_statements_of_more_than_one_table_are_refused() -> None:
    """Multi-table inheritance writes the parent's table in statements of its own:
    one compiled statement cannot do that (compiling touches no table)."""

    class Parent(models.Model):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "inventory"

        def __str__(self) -> str:
            return self.name

    class Child(Parent):
        size = models.IntegerField()

        class Meta:
            app_label = "inventory"

        def __str__(self) -> str:
            return f"{self.name} ({self.size})"

    both = CompiledQuery(
        lambda pk: update_query(Child.objects.filter(pk=pk), name="x", size=1),
        pk=-1,
    )
    with pytest.raises(RuntimeError, match="related models"):
        both._compile("default")
    with pytest.raises(TypeError, match="inherits a concrete model"):
        CompiledInsert(Child)


def movement_row(pk: int) -> dict:
    row = StockMovement.objects.filter(pk=pk).values().get()
    del row["id"], row["created_at"]
    return row


@pytest.mark.django_db
def test_an_insert_writes_the_row_model_save_would() -> None:
    actor = user_create()
    product = product_create(actor=actor, on_hand=0)
    values = {
        "product_id": product.pk,
        "kind": StockMovement.Kind.RESTOCK,
        "quantity": 3,
        "on_hand_delta": 3,
        "reserved_delta": 0,
        "actor": actor,
    }
    insert = CompiledInsert(StockMovement)
    before = timezone.now()

    saved = insert.save(StockMovement(**values))
    again = insert.save(StockMovement(**{**values, "quantity": 4}))

    by_django = StockMovement.objects.create(**values)
    assert saved.pk is not None
    assert again.pk == saved.pk + 1  # read back
    assert not saved._state.adding
    assert saved._state.db == "default"
    assert movement_row(saved.pk) == movement_row(by_django.pk)
    assert movement_row(again.pk) == {**movement_row(by_django.pk), "quantity": 4}
    stored = StockMovement.objects.get(pk=saved.pk).created_at
    assert saved.created_at == stored
    assert before <= stored <= timezone.now()


@pytest.mark.django_db
def test_a_connected_receiver_is_never_skipped() -> None:
    actor = user_create()
    product = product_create(actor=actor, on_hand=0)
    seen: list[StockMovement] = []

    def receiver(sender, instance, **kwargs) -> None:
        seen.append(instance)

    pre_save.connect(receiver, sender=StockMovement)
    try:
        saved = CompiledInsert(StockMovement).save(
            StockMovement(
                product_id=product.pk,
                kind=StockMovement.Kind.RESTOCK,
                quantity=1,
                on_hand_delta=1,
                reserved_delta=0,
            )
        )
    finally:
        pre_save.disconnect(receiver, sender=StockMovement)
    assert seen == [saved]
    assert StockMovement.objects.filter(pk=saved.pk).exists()


@pytest.mark.django_db
def test_an_expression_value_is_refused_and_plain_values_still_insert() -> None:
    actor = user_create()
    product = product_create(actor=actor, on_hand=0)
    insert = CompiledInsert(StockMovement)

    def movement(quantity) -> StockMovement:
        return StockMovement(
            product_id=product.pk,
            kind=StockMovement.Kind.RESTOCK,
            quantity=quantity,
            on_hand_delta=1,
            reserved_delta=0,
        )

    with pytest.raises(TypeError, match="quantity holds an expression"):
        insert.save(movement(Value(1)))
    saved = insert.save(movement(2))
    assert StockMovement.objects.get(pk=saved.pk).quantity == 2


@pytest.mark.django_db
def test_a_failed_insert_marks_the_transaction_for_rollback() -> None:
    owner = user_create()
    product = product_create(actor=owner, on_hand=0)

    def reservation() -> Reservation:
        return Reservation(
            product=product,
            owner=owner,
            quantity=1,
            expires_at=timezone.now() + timedelta(minutes=5),
            idempotency_key="same-key",
        )

    insert = CompiledInsert(Reservation)
    with transaction.atomic():
        insert.save(reservation())
        with pytest.raises(IntegrityError):
            insert.save(reservation())
        # As after a failed Model.save: this transaction can only roll back.
        assert transaction.get_connection().needs_rollback
