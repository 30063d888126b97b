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

from celery import Celery, Task, bootsteps, signals
from kombu import Exchange, Queue

from apps.core.liveness import (
    CANARY_QUEUE_EXPIRES_WINDOWS,
    CANARY_TASK,
    CanarySender,
    Reconnecting,
    busy_within_limits,
    canary_consumed,
    canary_interval,
    canary_queue_name,
    heartbeat_write,
    watchdog_start,
)
from apps.core.queues import PUBLISHED_AT_HEADER
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


def _queue_canaries() -> dict[str, dict[str, Any]]:
    """A canary per served queue, from beat: a queue no worker serves grows old.

    Each worker proves its own consuming with canaries on its own queue
    (apps/core/liveness.py); these ones keep every shared queue's oldest-message
    age (apps/core/queues.py) meaningful when no application task is waiting.
    """
    from django.conf import settings

    interval = canary_interval(settings.HEARTBEAT_STALE_SECONDS)
    return {
        f"canary-{queue}": {
            "task": CANARY_TASK,
            "schedule": interval,
            "kwargs": {"queue": queue},
            "options": {"queue": queue, "expires": interval * 4},
        }
        for queue in app.conf.worker_queues
    }


app.conf.beat_schedule.update(_queue_canaries())


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

    if headers is not None:
        # Read back by the queue metrics: the age of the oldest waiting message.
        headers[PUBLISHED_AT_HEADER] = time.time()
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

    from apps.core.queues import QueueCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector(settings.CELERY_WORKER_QUEUES))
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


# --- Heartbeats for the role-aware healthcheck (apps/core/liveness.py) ----------------


def heartbeat_path(role: str) -> Path:
    from django.conf import settings

    return heartbeat_file(directory=settings.HEARTBEAT_DIR, role=role)


def heartbeat_touch(role: str, reason: str = "tick") -> None:
    from django.conf import settings

    heartbeat_write(directory=settings.HEARTBEAT_DIR, role=role, reason=reason)


@app.task(
    name=CANARY_TASK,
    base=Task,
    ignore_result=True,
    acks_late=False,  # acked on receipt: a canary is never redelivered
    max_retries=0,
)
def canary(*, queue: str = "") -> None:
    """Prove that this worker consumed from the broker (see apps/core/liveness.py)."""
    from django.conf import settings

    canary_consumed(directory=settings.HEARTBEAT_DIR, queue=queue)


def _own_canary_queue(hostname: str) -> Queue:
    from django.conf import settings

    name = canary_queue_name(hostname)
    expires_ms = settings.HEARTBEAT_STALE_SECONDS * CANARY_QUEUE_EXPIRES_WINDOWS * 1000
    return Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        queue_arguments={"x-expires": expires_ms},
    )


@signals.celeryd_after_setup.connect
def _consume_own_canary_queue(sender: str, instance: Any, **kwargs: Any) -> None:
    """Every worker also consumes its own canary queue (named after its hostname)."""
    instance.app.amqp.queues.select_add(_own_canary_queue(sender))


class WorkerLiveness(bootsteps.StartStopStep):
    """Send this worker's canaries; tell "busy" from "stuck"; ride out reconnections.

    Celery calls `stop` on every broker reconnection and `start` when the consumer
    runs again; only `shutdown` removes the heartbeat.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref = None
        self.sender: CanarySender | None = None
        self.reconnecting: Reconnecting | None = None

    def start(self, parent: Any) -> None:
        from django.conf import settings

        self._stop_reconnecting()
        interval = canary_interval(settings.HEARTBEAT_STALE_SECONDS)
        heartbeat_touch("worker", "consumer started")
        if self.sender is None:
            self.sender = CanarySender(
                app=parent.app,
                queue=_own_canary_queue(parent.hostname),
                interval=interval,
            )
            self.sender.start()
        self.tref = parent.timer.call_repeatedly(
            interval, self._refresh_if_busy, (parent,), priority=10
        )

    def _refresh_if_busy(self, parent: Any) -> None:
        # Runs in the consumer's event loop: a blocked loop refreshes nothing.
        from celery.worker import state

        slots = getattr(parent.controller, "concurrency", None) or 0
        active = list(state.active_requests)
        if busy_within_limits(
            active=active,
            slots=slots,
            default_time_limit=parent.app.conf.task_time_limit or float("inf"),
            now=time.time(),
        ):
            heartbeat_touch("worker", f"busy: {len(active)} of {slots} slots running")

    def stop(self, parent: Any) -> None:
        from django.conf import settings

        self._cancel_timer()
        if self.reconnecting is None:
            self.reconnecting = Reconnecting(
                directory=settings.HEARTBEAT_DIR,
                stale_seconds=settings.HEARTBEAT_STALE_SECONDS,
            )

    def shutdown(self, parent: Any) -> None:
        self._cancel_timer()
        self._stop_reconnecting()
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        heartbeat_path("worker").unlink(missing_ok=True)

    def _cancel_timer(self) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _stop_reconnecting(self) -> None:
        if self.reconnecting is not None:
            self.reconnecting.stop()
            self.reconnecting = None


app.steps["consumer"].add(WorkerLiveness)


def _start_watchdog(role: str) -> None:
    from django.conf import settings

    from apps.core.healthcheck import check_heartbeat

    path = heartbeat_path(role)
    stale = settings.HEARTBEAT_STALE_SECONDS
    watchdog_start(
        role=role,
        check=lambda: check_heartbeat(path, stale),
        after_seconds=settings.HEALTH_WATCHDOG_SECONDS,
    )


@signals.worker_ready.connect
def _worker_watchdog(**kwargs: Any) -> None:
    _start_watchdog("worker")


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
            heartbeat_touch("beat", "standby: waiting for the scheduler lock")

    heartbeat_touch("beat", "starting")
    threading.Thread(target=beat_until_first_tick, daemon=True).start()
    _start_watchdog("beat")
