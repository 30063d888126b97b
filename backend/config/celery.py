"""The Celery app: reliability settings (config/settings.py), beat schedule, hooks.

Started by the entrypoint as `celery -A config worker` / `celery -A config beat`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from kombu import Queue

from apps.core.runtime_files import heartbeat_file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Every task counts its deliveries: a task that kills its worker each time ends as a
# failed task instead of being redelivered forever (apps/core/deliveries.py).
app = Celery("backend", task_cls="apps.core.deliveries:DeliveryLimitedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in app.conf.worker_queues]
app.autodiscover_tasks()

logger = logging.getLogger("apps.core.tasks")

# The beat schedule, in one place. Every entry expires before its next run, so a
# backlog (worker down for an hour) never turns into a burst of stale runs.
app.conf.beat_schedule = {
    "expire-reservations": {
        "task": "inventory.expire_reservations",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "reconcile-inventory-redis-db": {
        "task": "inventory.reconcile_inventory_redis_db",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
}


# --- Logging ------------------------------------------------------------------------


@signals.setup_logging.connect
def _setup_logging(**kwargs: Any) -> None:
    """Keep the project's logging (JSON on stdout) instead of Celery's own."""
    from django.conf import settings

    from apps.core.logging import configure_logging

    configure_logging(
        log_format=settings.LOG_FORMAT,
        level=settings.LOG_LEVEL,
        cache_error_interval=settings.CACHE_ERROR_LOG_INTERVAL,
    )


# --- Request id: from the enqueuing request into the task's log lines ---------------


@signals.before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from apps.core.context import request_id_get

    request_id = request_id_get()
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


_task_context_tokens: dict[str, Any] = {}
_task_started: dict[str, float] = {}


@signals.task_prerun.connect
def _enter_task_context(task_id: str | None = None, task: Any = None, **kwargs: Any):
    from apps.core.context import request_id_var, task_id_var

    request_id = getattr(task.request, "request_id", None) if task else None
    _task_context_tokens[task_id or ""] = (
        request_id_var.set(request_id),
        task_id_var.set(task_id),
    )
    _task_started[task_id or ""] = time.monotonic()


@signals.task_postrun.connect
def _leave_task_context(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs
) -> None:
    from apps.core.context import request_id_var, task_id_var
    from apps.core.metrics import celery_task_duration, celery_tasks

    name = getattr(task, "name", "unknown")
    started = _task_started.pop(task_id or "", None)
    if started is not None:
        celery_task_duration.labels(task=name).observe(time.monotonic() - started)
    celery_tasks.labels(task=name, outcome=(state or "unknown").lower()).inc()
    tokens = _task_context_tokens.pop(task_id or "", None)
    if tokens:
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])


# --- Worker metrics endpoint ---------------------------------------------------------


@signals.worker_init.connect
def _serve_worker_metrics(**kwargs: Any) -> None:
    """Serve the pool processes' metrics from the worker's main process."""
    from django.conf import settings

    port = settings.WORKER_METRICS_PORT
    if not port or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        # Metrics are not worth refusing work for; say so loudly.
        logger.error("worker metrics port %s unavailable: %s", port, exc)
        return
    logger.info("worker metrics on :%s/metrics", port)


@signals.worker_process_init.connect
def _initialize_task_metrics(**kwargs: Any) -> None:
    """Export the delivery-limit counter at 0 for every task, so alerts see it."""
    from apps.core.metrics import celery_task_deliveries_exhausted

    for name in app.tasks:
        if not name.startswith("celery."):
            celery_task_deliveries_exhausted.labels(task=name)


@signals.worker_process_shutdown.connect
def _mark_pool_process_dead(pid: int | None = None, **kwargs: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


# --- Failed tasks: never lost -------------------------------------------------------


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


# --- Heartbeats for the role-aware healthcheck ---------------------------------------


def heartbeat_path(role: str) -> Path:
    from django.conf import settings

    return heartbeat_file(directory=settings.HEARTBEAT_DIR, role=role)


def heartbeat_touch(role: str) -> None:
    path = heartbeat_path(role)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()))


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Keep the worker heartbeat file fresh while the worker runs or reconnects.

    While the consumer runs, its own timer touches the file, so a blocked event
    loop goes stale. Celery also calls `stop` on every broker reconnection; the
    worker is then doing the right thing (retrying), and restarting it would only
    make it fail its dependency wait, so a thread keeps the file fresh until the
    consumer starts again. Only `shutdown` removes the file.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}
    interval = 5.0

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref = None
        self.reconnecting: threading.Event | None = None

    def start(self, parent: Any) -> None:
        self._stop_reconnecting()
        heartbeat_touch("worker")
        self.tref = parent.timer.call_repeatedly(
            self.interval, heartbeat_touch, ("worker",), priority=10
        )

    def stop(self, parent: Any) -> None:
        self._cancel_timer()
        if self.reconnecting is None:
            self.reconnecting = threading.Event()
            threading.Thread(
                target=self._touch_until_set,
                args=(self.reconnecting,),
                name="heartbeat-while-reconnecting",
                daemon=True,
            ).start()

    def shutdown(self, parent: Any) -> None:
        self._cancel_timer()
        self._stop_reconnecting()
        heartbeat_path("worker").unlink(missing_ok=True)

    def _touch_until_set(self, done: threading.Event) -> None:
        while not done.wait(self.interval):
            heartbeat_touch("worker")

    def _cancel_timer(self) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _stop_reconnecting(self) -> None:
        if self.reconnecting is not None:
            self.reconnecting.set()
            self.reconnecting = None


app.steps["consumer"].add(WorkerHeartbeat)

# Set by the scheduler's first tick (apps.core.beat); until then a standby thread
# keeps the heartbeat fresh.
beat_ticked = threading.Event()


@signals.beat_init.connect
def _beat_standby_heartbeat(**kwargs: Any) -> None:
    """Keep a waiting (standby) beat healthy until it holds the lock and ticks.

    Connected before RedBeat's own beat_init handler, which blocks until this beat
    holds the lock; a second beat waits there instead of scheduling twice.
    """

    def beat_until_first_tick() -> None:
        while not beat_ticked.wait(5.0):
            heartbeat_touch("beat")

    heartbeat_touch("beat")
    threading.Thread(target=beat_until_first_tick, daemon=True).start()
