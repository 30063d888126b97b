"""Put the inventory gate's counter in a wrong state, as a lost update or a failover
would, for tests of the paths that must survive or repair it."""

from __future__ import annotations

from apps.inventory import gate


def gate_counter_corrupt(*, sku: str, expected: int, value: int) -> None:
    """Overwrite the SKU's counter with `value`, after checking it held `expected`
    (the test's own arithmetic of the counter so far)."""
    assert gate.gate_read(sku=sku) == expected
    gate._client().set(gate.gate_key(sku), value)
