"""The reconciliation lock is a lease: a run that dies holding it blocks others for
seconds, and a failover's reconcile is retried until it has really run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from apps.inventory import gate, services
from apps.inventory.gate import (
    RECONCILE_LOCK_KEY,
    RECONCILE_LOCK_SECONDS,
    SERVER_MARK_KEY,
    ReconcileLeaseLost,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def abandoned_lock() -> Iterator[Callable[[], None]]:
    """Take the lock as a run does and never release it: what a worker SIGKILLed
    mid-run leaves in Redis. (Kept referenced: a collected context manager would
    release it.)"""
    runs = []

    def take() -> None:
        run = gate.gate_reconcile_lock()
        assert run.__enter__() is not None
        runs.append(run)

    yield take
    gate._client().delete(RECONCILE_LOCK_KEY)


def skew(sku: str, value: int) -> None:
    gate._client().set(gate.gate_key(sku), value)


def test_a_run_that_dies_holding_the_lock_frees_it_within_the_lease(
    make_product, abandoned_lock, caplog
) -> None:
    product = make_product(on_hand=5)
    skew(product.sku, 1)
    abandoned_lock()
    remaining_ms = gate._client().pttl(RECONCILE_LOCK_KEY)
    assert 0 < remaining_ms <= RECONCILE_LOCK_SECONDS * 1000 <= 30_000

    with caplog.at_level(logging.INFO, logger="apps.inventory.services"):
        assert services.inventory_gate_reconcile() == 0
    assert "reconciliation already running elsewhere; skipped" in caplog.messages
    assert gate.gate_read(sku=product.sku) == 1

    # The lease lapses (here at once) and the next run repairs.
    gate._client().delete(RECONCILE_LOCK_KEY)
    assert services.inventory_gate_reconcile() == 1
    assert gate.gate_read(sku=product.sku) == 5


def test_a_failover_reconcile_skipped_by_the_lock_is_retried_at_the_next_check(
    make_product, abandoned_lock
) -> None:
    product = make_product(on_hand=4)
    skew(product.sku, 0)  # the promoted replica missed give-backs
    gate._client().set(SERVER_MARK_KEY, "the-previous-server")
    abandoned_lock()

    assert services.inventory_gate_check_server() == 0
    changed, _ = gate.gate_server_changed()
    assert changed, "the server was marked reconciled although no run completed"
    assert gate.gate_read(sku=product.sku) == 0

    gate._client().delete(RECONCILE_LOCK_KEY)  # the dead run's lease lapsed
    assert services.inventory_gate_check_server() == 1
    assert gate.gate_read(sku=product.sku) == 4
    assert gate.gate_server_changed()[0] is False


def test_a_long_run_renews_its_lease_and_stops_once_another_holds_it(
    make_product, monkeypatch
) -> None:
    # Renew at every step, as a run does once it is past the renewal interval.
    monkeypatch.setattr(gate, "RECONCILE_LOCK_RENEW_SECONDS", 0)
    client = gate._client()
    with gate.gate_reconcile_lock() as lease:
        assert lease is not None
        client.pexpire(RECONCILE_LOCK_KEY, 2_000)
        lease.keep()
        assert client.pttl(RECONCILE_LOCK_KEY) > 2_000  # renewed to the full lease

        client.delete(RECONCILE_LOCK_KEY)  # the lease lapsed...
        other = client.lock(RECONCILE_LOCK_KEY, timeout=RECONCILE_LOCK_SECONDS)
        assert other.acquire(blocking=False)  # ...and another run took the lock
        with pytest.raises(ReconcileLeaseLost):
            lease.keep()
    assert other.owned()  # leaving did not release the other run's lock
    other.release()

    # A run whose lease is taken over mid-way stops before its next SKU, and the
    # failover check that started it leaves the server unmarked.
    first, second = make_product(on_hand=3), make_product(on_hand=3)
    skew(first.sku, 0)
    skew(second.sku, 0)
    client.set(SERVER_MARK_KEY, "the-previous-server")
    read = gate.gate_read
    thief = client.lock(RECONCILE_LOCK_KEY, timeout=RECONCILE_LOCK_SECONDS)

    def read_then_lose_the_lease(*, sku: str) -> int | None:
        if not thief.owned():
            client.delete(RECONCILE_LOCK_KEY)
            assert thief.acquire(blocking=False)
        return read(sku=sku)

    monkeypatch.setattr(gate, "gate_read", read_then_lose_the_lease)
    assert services.inventory_gate_check_server() == 0
    assert (read(sku=first.sku), read(sku=second.sku)) == (3, 0)
    assert gate.gate_server_changed()[0] is True
    assert thief.owned()
    thief.release()
