"""Inventory tasks (scheduled in config/celery.py). Idempotent: safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.inventory.services import (
    inventory_gate_check_server,
    inventory_gate_reconcile,
    reservations_expire,
)

logger = logging.getLogger(__name__)


@shared_task(name="inventory.expire_reservations", ignore_result=True)
def expire_reservations() -> int:
    """Release every active reservation past its deadline."""
    count = reservations_expire()
    if count:
        logger.info("expired %d reservation(s)", count, extra={"count": count})
    return count


@shared_task(name="inventory.reconcile_inventory_redis_db", ignore_result=True)
def reconcile_inventory_redis_db() -> int:
    """Make every SKU's Redis counter equal the database's available; return repairs."""
    return inventory_gate_reconcile()


@shared_task(name="inventory.gate_check_server", ignore_result=True)
def gate_check_server() -> int:
    """Reconcile now if Redis is another server than last time (failover, restart)."""
    return inventory_gate_check_server()
