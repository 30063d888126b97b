"""Bounded redelivery: a task that kills its worker each time ends as a failed task.

With acks late and reject-on-worker-lost, Redis delivers a task again whenever the
process running it dies, with no limit: a poison task (one that crashes or OOMs
its worker every time) would loop forever and starve the queue. Every delivery is
counted in Redis, before the task body runs; past the limit the task fails at once
with `DeliveryLimitExceeded`, which the failure hook records as a `FailedTask`
(then acked), and `celery_task_deliveries_exhausted_total` counts it for alerting.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from apps.core.redis.roles import durable_redis
from apps.core.worker.queues import queue_redelivery_count

logger = logging.getLogger(__name__)

KEY_PREFIX = "celery:deliveries:"
# Longer than every redelivery of one task can take (limit x visibility timeout,
# default 5 x 5 minutes); the key is deleted when the task returns, so this only bounds
# what a lost worker leaves behind.
KEY_TTL_SECONDS = 7 * 24 * 3600


class DeliveryLimitExceeded(Exception):
    """The task was delivered too many times without finishing."""


def _key(task_id: str, retries: int) -> str:
    # Per retry: a task's own retries are new messages with the same id.
    return f"{KEY_PREFIX}{task_id}:{retries}"


def task_delivery_count(*, task_id: str, retries: int) -> int | None:
    """Count one more delivery of the task; return the count (None: Redis failed)."""
    key = _key(task_id, retries)
    try:
        with durable_redis().pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, KEY_TTL_SECONDS)
            deliveries, _ = pipe.execute()
    except Exception as exc:  # noqa: BLE001 - never refuse work because of the count
        logger.warning("delivery count unavailable for %s: %s", task_id, exc)
        return None
    return int(deliveries)


def task_delivery_forget(*, task_id: str, retries: int) -> None:
    """Drop the count of a task that returned (success, failure or retry)."""
    try:
        durable_redis().delete(_key(task_id, retries))
    except Exception as exc:  # noqa: BLE001 - the key expires on its own
        logger.warning("delivery count not deleted for %s: %s", task_id, exc)


class DeliveryLimitedTask(Task):
    """The project's task base class (config/celery.py): counts deliveries."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.id and not request.called_directly and not request.is_eager:
            from django.conf import settings

            from apps.core.worker.metrics import celery_task_deliveries_exhausted

            limit = settings.TASK_MAX_DELIVERIES
            deliveries = task_delivery_count(
                task_id=request.id, retries=request.retries or 0
            )
            if deliveries is not None and deliveries > 1:
                queue_redelivery_count(
                    queue=(request.delivery_info or {}).get("routing_key") or ""
                )
            if deliveries is not None and deliveries > limit:
                celery_task_deliveries_exhausted.labels(task=self.name).inc()
                raise DeliveryLimitExceeded(
                    f"{self.name}[{request.id}] was delivered {deliveries} times "
                    f"(limit {limit}) without finishing"
                )
        return super().__call__(*args, **kwargs)

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        request = self.request
        if task_id and not request.called_directly and not request.is_eager:
            task_delivery_forget(task_id=task_id, retries=request.retries or 0)
