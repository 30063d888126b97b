"""Prometheus metrics of the inventory (summed across gunicorn workers)."""

from prometheus_client import Counter, Histogram

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
gate_seconds = Histogram(
    "inventory_gate_seconds",
    "Round trip of one Redis command of the gate (take, give back, warm, read, "
    "repair, reconciliation lock), failures included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
