"""Worker and beat heartbeats, wired into Celery (the mechanics:
apps/core/worker/liveness/watchdog.py).

A worker's heartbeat is refreshed by its canaries, by its consumer while every pool
slot runs a task inside its time limit, and by a thread while it reconnects to a
lost broker; beat's by every scheduler tick (apps/core/worker/liveness/beat.py) and,
until the first one, by a standby thread. A watchdog exits either process once its
heartbeat has been stale for HEALTH_WATCHDOG_SECONDS.

Connected by config/celery.py, which also adds `WorkerLiveness` to the consumer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import bootsteps, signals
from kombu import Exchange, Queue

from apps.core.worker.liveness.watchdog import (
    CANARY_QUEUE_EXPIRES_WINDOWS,
    CANARY_TASK,
    CanarySender,
    Reconnecting,
    busy_within_limits,
    canary_interval,
    canary_queue_name,
    heartbeat_write,
    watchdog_start,
)
from runtime.files import heartbeat_file


def heartbeat_touch(role: str, reason: str = "tick") -> None:
    """Refresh `role`'s heartbeat in HEARTBEAT_DIR, saying why."""
    from django.conf import settings

    heartbeat_write(directory=settings.HEARTBEAT_DIR, role=role, reason=reason)


def queue_canaries(queues: list[str]) -> dict[str, dict[str, Any]]:
    """Beat entries sending a canary to each served queue: unserved ones grow old.

    Each worker proves its own consuming with canaries on its own queue
    (apps/core/worker/liveness/watchdog.py); these ones keep every shared queue's
    oldest-message age (apps/core/worker/queues.py) meaningful when no application
    task is waiting.
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
        for queue in queues
    }


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
        from django.conf import settings

        self._cancel_timer()
        self._stop_reconnecting()
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        heartbeat_file(directory=settings.HEARTBEAT_DIR, role="worker").unlink(
            missing_ok=True
        )

    def _cancel_timer(self) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _stop_reconnecting(self) -> None:
        if self.reconnecting is not None:
            self.reconnecting.stop()
            self.reconnecting = None


def _start_watchdog(role: str) -> None:
    from django.conf import settings

    from runtime.healthcheck import check_heartbeat

    path = heartbeat_file(directory=settings.HEARTBEAT_DIR, role=role)
    stale = settings.HEARTBEAT_STALE_SECONDS
    watchdog_start(
        role=role,
        check=lambda: check_heartbeat(path, stale),
        after_seconds=settings.HEALTH_WATCHDOG_SECONDS,
    )


@signals.worker_ready.connect
def _worker_watchdog(**kwargs: Any) -> None:
    _start_watchdog("worker")


# Set by the scheduler's first tick (apps.core.worker.liveness.beat); until then a
# standby thread keeps the heartbeat fresh.
beat_ticked = threading.Event()


@signals.beat_init.connect
def _beat_standby_heartbeat(**kwargs: Any) -> None:
    """Keep a waiting (standby) beat healthy until it holds the lock and ticks.

    Connected before RedBeat's own beat_init handler (config/celery.py imports this
    module; the scheduler, apps/core/worker/liveness/beat.py, imports RedBeat only when
    beat starts), which blocks until this beat holds the lock; a second beat waits there
    instead of scheduling twice.
    """

    def beat_until_first_tick() -> None:
        while not beat_ticked.wait(5.0):
            heartbeat_touch("beat", "standby: waiting for the scheduler lock")

    heartbeat_touch("beat", "starting")
    threading.Thread(target=beat_until_first_tick, daemon=True).start()
    _start_watchdog("beat")
