"""Core tasks (found by the Celery app's autodiscovery)."""

from __future__ import annotations

from celery import Task, shared_task

from apps.core.worker.liveness.watchdog import CANARY_TASK, canary_consumed


@shared_task(
    name=CANARY_TASK,
    base=Task,
    ignore_result=True,
    acks_late=False,  # acked on receipt: a canary is never redelivered
    max_retries=0,
)
def canary(*, queue: str = "") -> None:
    """Prove that this worker consumed from the broker (see
    apps/core/worker/liveness/watchdog.py)."""
    from django.conf import settings

    canary_consumed(directory=settings.HEARTBEAT_DIR, queue=queue)
