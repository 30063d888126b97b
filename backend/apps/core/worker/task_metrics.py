"""Celery worker metrics: per-task outcomes and run times, served by the worker.

The pool processes write prometheus_client's multiprocess files; the worker's main
process serves them, with the queue figures (apps/core/worker/queues.py), on
WORKER_METRICS_PORT. Connected by importing this module (config/celery.py).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import signals
from celery.app import default_app

logger = logging.getLogger(__name__)

# Per running task id: when it started (monotonic), read by its postrun handler.
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, **kwargs: Any) -> None:
    _started[task_id or ""] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs
) -> None:
    from apps.core.worker.metrics import celery_task_duration, celery_tasks

    name = getattr(task, "name", "unknown")
    started = _started.pop(task_id or "", None)
    if started is not None:
        celery_task_duration.labels(task=name).observe(time.monotonic() - started)
    celery_tasks.labels(task=name, outcome=(state or "unknown").lower()).inc()


def _serve_with_token(
    port: int, *, registry: Any, token: str | None, previous: str | None = None
) -> None:
    """Serve `registry` on `port` in a daemon thread, to METRICS_TOKEN holders only.

    The same rule as web's /metrics: the port is reachable by anything on the
    container's network, and the metrics name queues, tasks and failure counts.
    """
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    from apps.core.http.metrics_auth import metrics_refusal
    from runtime.error_document import error_json

    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        refusal = metrics_refusal(
            token=token,
            previous=previous,
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
        )
        if refusal is None:
            return exposition(environ, start_response)
        body = error_json(code=refusal.code, message=refusal.message, request_id=None)
        headers = [("Content-Type", "application/json")]
        if refusal.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        phrase = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
        start_response(f"{refusal.status} {phrase[refusal.status]}", headers)
        return [body]

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # every scrape would be a line in the worker's log

    server = make_server(
        "", port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()


@signals.worker_init.connect
def _serve_worker_metrics(**kwargs: Any) -> None:
    """Serve the pool processes' metrics from the worker's main process."""
    from django.conf import settings

    port = settings.WORKER_METRICS_PORT
    if not port or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import CollectorRegistry, multiprocess

    from apps.core.worker.queues import QueueCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector(settings.CELERY_WORKER_QUEUES))
    try:
        _serve_with_token(
            port,
            registry=registry,
            token=settings.METRICS_TOKEN,
            previous=settings.METRICS_TOKEN_PREVIOUS,
        )
    except OSError as exc:
        # Metrics are not worth refusing work for; say so loudly.
        logger.error("worker metrics port %s unavailable: %s", port, exc)
        return
    logger.info("worker metrics on :%s/metrics", port)


@signals.worker_process_init.connect
def _initialize_task_metrics(**kwargs: Any) -> None:
    """Export the delivery-limit counter at 0 for every task, so alerts see it."""
    from apps.core.worker.metrics import celery_task_deliveries_exhausted

    for name in default_app.tasks:
        if not name.startswith("celery."):
            celery_task_deliveries_exhausted.labels(task=name)


@signals.worker_process_shutdown.connect
def _mark_pool_process_dead(pid: int | None = None, **kwargs: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
