"""Core write services: failed-task records."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery.app import default_app
from django.utils import timezone

from apps.core.models import FailedTask

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    # Task arguments are JSON already (Celery's serializer); keep a repr otherwise.
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def failed_task_record(
    *,
    task_name: str,
    task_id: str,
    queue: str,
    args: list[Any],
    kwargs: dict[str, Any],
    exception: str,
    traceback: str,
) -> FailedTask:
    """Store a failed task so it survives worker restarts and can be re-enqueued."""
    return FailedTask.objects.create(
        task_name=task_name,
        task_id=task_id,
        queue=queue,
        args=_jsonable(args),
        kwargs=_jsonable(kwargs),
        exception=exception[:10000],
        traceback=traceback[:50000],
    )


def failed_task_requeue(*, failed_task: FailedTask) -> str:
    """Enqueue the failed task again, same arguments and queue; return the new id."""
    # The project's app: config/celery.py (loaded with the settings package, see
    # config/__init__.py) makes it the default of every thread.
    result = default_app.send_task(
        failed_task.task_name,
        args=failed_task.args,
        kwargs=failed_task.kwargs,
        queue=failed_task.queue or None,
    )
    failed_task.requeued_at = timezone.now()
    failed_task.requeued_task_id = result.id
    failed_task.save(update_fields=["requeued_at", "requeued_task_id"])
    logger.info(
        "failed task re-enqueued",
        extra={"task_name": failed_task.task_name, "new_task_id": result.id},
    )
    return result.id
