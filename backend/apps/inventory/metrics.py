"""Prometheus metrics of the inventory (summed across gunicorn workers)."""

from prometheus_client import Counter

gate_decisions = Counter(
    "inventory_gate_decisions_total",
    "Reservation attempts decided by the Redis gate, by outcome.",
    ["outcome"],  # admitted, rejected
)
gate_fallbacks = Counter(
    "inventory_gate_fallbacks_total",
    "Reservation attempts that went to the database alone because Redis failed.",
)
reservations = Counter(
    "inventory_reservations_total",
    "Reservation attempts by result.",
    ["result"],  # created, replayed, insufficient_stock
)
reconcile_repairs = Counter(
    "inventory_reconcile_repairs_total",
    "SKUs whose Redis counter the reconciliation repaired.",
)
expired_reservations = Counter(
    "inventory_reservations_expired_total",
    "Reservations released by the expiry task.",
)
