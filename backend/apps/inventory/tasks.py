"""Inventory tasks (scheduled in config/celery.py). Idempotent: safe to run twice."""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from redis.exceptions import LockError, RedisError

from apps.inventory import gate, metrics
from apps.inventory.models import Stock
from apps.inventory.selectors import stock_available
from apps.inventory.services import reservations_expire

logger = logging.getLogger(__name__)

RECONCILE_LOCK_KEY = "inventory:reconcile:lock"
RECONCILE_LOCK_SECONDS = 600


@shared_task(name="inventory.expire_reservations", ignore_result=True)
def expire_reservations() -> int:
    """Release every active reservation past its deadline."""
    count = reservations_expire()
    if count:
        logger.info("expired %d reservation(s)", count, extra={"count": count})
    return count


@shared_task(name="inventory.reconcile_inventory_redis_db", ignore_result=True)
def reconcile_inventory_redis_db() -> int:
    """Make every SKU's Redis counter equal the database's available; return repairs.

    Races with traffic may leave a counter too high (the database refuses the
    extra units; the next run repairs it), never too low.
    """
    if not gate.gate_enabled():
        return 0
    from django_redis import get_redis_connection

    lock = get_redis_connection("default").lock(
        RECONCILE_LOCK_KEY, timeout=RECONCILE_LOCK_SECONDS, blocking=False
    )
    try:
        if not lock.acquire():
            logger.info("reconciliation already running elsewhere; skipped")
            return 0
    except RedisError as exc:
        logger.warning("reconciliation skipped, Redis unavailable: %s", exc)
        return 0
    repairs = 0
    try:
        stocks = (
            Stock.objects.select_related("product")
            .only("on_hand", "reserved", "product__sku")
            .order_by("product_id")
        )
        for stock in stocks.iterator(chunk_size=1000):
            # The snapshot only picks candidates: it may be older than the counter.
            sku = stock.product.sku
            if gate.gate_read(sku=sku) == stock.available:
                continue
            # The repair reads both again, counter first, and writes nothing if
            # traffic touched the counter meanwhile (see gate_repair).
            repair = gate.gate_repair(
                sku=sku,
                database_available=partial(stock_available, product_id=stock.pk),
            )
            if repair.repaired:
                repairs += 1
                metrics.reconcile_repairs.inc()
                logger.warning(
                    "reconciled inventory counter",
                    extra={
                        "sku": sku,
                        "redis_value": repair.redis_value,
                        "database_value": repair.database_value,
                    },
                )
    finally:
        try:
            lock.release()
        except (LockError, RedisError):
            logger.warning("reconciliation lock expired before release")
    logger.info("reconciliation finished", extra={"repairs": repairs})
    return repairs
