"""Worker and beat liveness: heartbeats that only consuming refreshes, and a watchdog.

Why a canary: a worker can stay alive, keep its timers ticking and still never
receive another message (celery#8091: the consumer stops consuming after a Redis
reconnection). A heartbeat written by a timer misses that; only a message that
went through the broker and back proves the consume loop works. So every worker
sends a cheap task (`core.canary`) to a queue of its own every quarter of
HEARTBEAT_STALE_SECONDS, and the pool process that runs it refreshes the heartbeat.

Why a queue of its own: with several workers on one Redis list, a canary sent to
the shared queue may be taken by another worker and prove nothing about this one.
kombu's Redis transport sends one BRPOP over every queue (and priority sub-list) a
consumer serves (kombu/transport/redis.py, `Channel._brpop_start`), so a delivery
from the worker's own queue proves that same BRPOP loop delivers its other queues.
The per-queue side is covered by beat's canaries (apps/core/worker/liveness/wiring.py)
and the queue age metric (apps/core/worker/queues.py): a queue nobody serves grows
old and alerts.

Busy is not stuck: with prefetch 1 a worker whose pool slots all run tasks stops
polling the broker, so it receives no canary. The consumer's event loop then
refreshes the heartbeat itself, but only while every running task is inside its
hard time limit (past it, Celery should have killed the task; a worker that did
not is stuck).

A lost broker: while Celery reconnects, a thread keeps the heartbeat fresh, since
restarting would only move the wait into the entrypoint; but only while the
heartbeat is still fresh and the last canary is younger than
RECONNECT_GRACE_WINDOWS windows, so a worker that never gets back to consuming
(a broker that accepts connections and never answers) ends unhealthy too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.files import consumed_file, heartbeat_file

logger = logging.getLogger(__name__)

CANARY_TASK = "core.canary"
# A worker retrying a lost broker stays healthy this many stale windows after its
# last canary (5 minutes by default): longer than a Redis restart or failover.
RECONNECT_GRACE_WINDOWS = 5
# The canary's own queue disappears this many windows after the last canary sent
# to it (pod names change on every restart; dead workers' queues must not pile up).
CANARY_QUEUE_EXPIRES_WINDOWS = 10


def canary_interval(stale_seconds: float) -> float:
    """Seconds between canaries: four chances per stale window."""
    return stale_seconds / 4


def canary_queue_name(hostname: str) -> str:
    return f"canary.{hostname}"


def heartbeat_write(*, directory: str | Path, role: str, reason: str) -> None:
    """Refresh a role's heartbeat; the file says why ("<unix time> <reason>")."""
    path = heartbeat_file(directory=directory, role=role)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.3f} {reason}")


def file_age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def canary_consumed(*, directory: str | Path, queue: str) -> None:
    """What the canary task does: record that this worker consumed, and when."""
    consumed = consumed_file(directory=directory)
    consumed.parent.mkdir(parents=True, exist_ok=True)
    consumed.write_text(f"{time.time():.3f}")
    heartbeat_write(directory=directory, role="worker", reason=f"canary from {queue}")


def busy_within_limits(
    *, active: list[Any], slots: int, default_time_limit: float, now: float
) -> bool:
    """True when every pool slot runs a task that is still inside its time limit."""
    if slots <= 0 or len(active) < slots:
        return False
    for request in active:
        started = getattr(request, "time_start", None)
        hard_limit = (getattr(request, "time_limits", None) or (None, None))[0]
        if started is None or now - started >= (hard_limit or default_time_limit):
            return False
    return True


class CanarySender:
    """A thread of the worker's main process sending canaries to its own queue.

    A thread, not the consumer's timer: publishing waits on the broker (up to
    CELERY_BROKER_TIMEOUT), and the event loop must not.
    """

    def __init__(self, *, app: Any, queue: Any, interval: float) -> None:
        self.app = app
        self.queue = queue
        self.interval = interval
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="canary", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()

    def _run(self) -> None:
        while not self.done.is_set():
            self.send()
            self.done.wait(self.interval)

    def send(self) -> None:
        try:
            with self.app.connection_for_write() as connection:
                self.app.send_task(
                    CANARY_TASK,
                    kwargs={"queue": self.queue.name},
                    queue=self.queue,
                    connection=connection,
                    # Useless once older than the stale window; never retried.
                    expires=self.interval * 4,
                    retry=False,
                    declare=[self.queue],
                )
        except Exception as exc:  # noqa: BLE001 - the heartbeat shows the cost
            logger.debug("canary not sent: %s", exc)


class Reconnecting:
    """Keep the heartbeat fresh while Celery retries a lost broker, within bounds."""

    def __init__(self, *, directory: str | Path, stale_seconds: float) -> None:
        self.directory = directory
        self.stale_seconds = stale_seconds
        self.done = threading.Event()
        threading.Thread(target=self._run, name="reconnecting", daemon=True).start()

    def stop(self) -> None:
        self.done.set()

    def _run(self) -> None:
        interval = canary_interval(self.stale_seconds)
        while not self.done.wait(interval):
            beat_path = heartbeat_file(directory=self.directory, role="worker")
            heartbeat = file_age(beat_path)
            consumed = file_age(consumed_file(directory=self.directory))
            grace = self.stale_seconds * RECONNECT_GRACE_WINDOWS
            # Never revive a stale heartbeat: a watchdog may be counting it.
            if heartbeat is None or heartbeat > self.stale_seconds:
                continue
            if consumed is not None and consumed > grace:
                continue
            heartbeat_write(
                directory=self.directory, role="worker", reason="reconnecting to broker"
            )


def child_pids(parent: int) -> list[int]:
    """Pids of a process's children, read from /proc (Linux, as in the image)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (2nd field) may hold spaces: split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            pids.append(int(entry.name))
    return pids


def watchdog_start(
    *,
    role: str,
    check: Callable[[], tuple[bool, str]],
    after_seconds: float,
    poll_seconds: float = 1.0,
) -> threading.Thread | None:
    """Exit the process (status 70) once `check` has failed for `after_seconds`.

    Compose's `restart: unless-stopped` and Railway's restart policy restart a
    process that exits, not one that is merely unhealthy; 0 turns this off where
    the platform's probe already replaces the container (Kubernetes, ECS).
    """
    if after_seconds <= 0:
        return None

    def watch() -> None:
        failing_since: float | None = None
        while True:
            time.sleep(poll_seconds)
            ok, why = check()
            now = time.monotonic()
            if ok:
                failing_since = None
                continue
            if failing_since is None:
                failing_since = now
                logger.warning("%s unhealthy: %s", role, why)
            elif now - failing_since >= after_seconds:
                logger.critical(
                    "%s unhealthy for %.0fs, exiting so that it is replaced: %s",
                    role,
                    now - failing_since,
                    why,
                    extra={"watchdog": True},
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                # A hung pool must not outlive its parent (and keep its tasks).
                for pid in child_pids(os.getpid()):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                os._exit(70)

    thread = threading.Thread(target=watch, name=f"{role}-watchdog", daemon=True)
    thread.start()
    return thread
