"""Failed tasks are never lost: logged CRITICAL and stored as FailedTask rows.

Connected by importing this module (config/celery.py); operators re-enqueue the
rows from the admin (apps/core/services.py: failed_task_requeue).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

logger = logging.getLogger(__name__)


@signals.task_failure.connect
def _record_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **extra: Any,
) -> None:
    from apps.core.services import failed_task_record

    name = getattr(sender, "name", str(sender))
    delivery_info = getattr(getattr(sender, "request", None), "delivery_info", None)
    queue = (delivery_info or {}).get("routing_key") or ""
    logger.critical(
        "task failed: %s[%s]: %r",
        name,
        task_id,
        exception,
        extra={"task_name": name, "task_id": task_id, "exception": repr(exception)},
    )
    try:
        failed_task_record(
            task_name=name,
            task_id=task_id or "",
            queue=queue,
            args=list(args or []),
            kwargs=dict(kwargs or {}),
            exception=repr(exception),
            traceback=str(einfo.traceback if einfo else ""),
        )
    except Exception:
        # The CRITICAL line above still carries the failure if the database is gone.
        logger.exception("could not record failed task %s", task_id)
