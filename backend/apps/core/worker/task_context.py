"""Celery processes log like the web: the project's logging, request and task ids.

A task enqueued during a request carries the request's id in its headers; the
worker puts it, with the task id, into every log line the task writes. Every
message also carries its publish time, read back by the queue-age metric
(apps/core/worker/queues.py). Connected by importing this module (config/celery.py).
"""

from __future__ import annotations

import time
from contextvars import Token
from typing import Any

from celery import signals

from apps.core.worker.queues import PUBLISHED_AT_HEADER

# Per running task id: the context tokens its postrun handler resets.
_tokens: dict[str, tuple[Token, Token]] = {}


@signals.setup_logging.connect
def _setup_logging(**kwargs: Any) -> None:
    """Keep the project's logging (JSON on stdout) instead of Celery's own."""
    from django.conf import settings

    from runtime.logging import configure_logging

    configure_logging(
        log_format=settings.LOG_FORMAT,
        level=settings.LOG_LEVEL,
        cache_error_interval=settings.CACHE_ERROR_LOG_INTERVAL,
    )


@signals.before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from runtime.context import request_id_get

    if headers is None:
        return
    headers[PUBLISHED_AT_HEADER] = time.time()
    request_id = request_id_get()
    if request_id and "request_id" not in headers:
        headers["request_id"] = request_id


@signals.task_prerun.connect
def _enter_task_context(
    task_id: str | None = None, task: Any = None, **kwargs: Any
) -> None:
    from runtime.context import request_id_var, task_id_var

    request_id = getattr(task.request, "request_id", None) if task else None
    _tokens[task_id or ""] = (
        request_id_var.set(request_id),
        task_id_var.set(task_id),
    )


@signals.task_postrun.connect
def _leave_task_context(task_id: str | None = None, **kwargs: Any) -> None:
    from runtime.context import request_id_var, task_id_var

    tokens = _tokens.pop(task_id or "", None)
    if tokens:
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])
