"""The Celery app: reliability settings (config/settings.py) and the beat schedule.

Started by the entrypoint as `celery -A config worker` / `celery -A config beat`.
What runs around tasks lives in apps/core/worker, connected here by importing it:
log lines and request ids (task_context), worker metrics (task_metrics), failure
records (task_failures), heartbeats and canaries (liveness/wiring).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu import Queue

from apps.core.worker import task_context, task_failures, task_metrics  # noqa: F401
from apps.core.worker.liveness.wiring import WorkerLiveness, queue_canaries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Every task counts its deliveries: a task that kills its worker each time ends as a
# failed task instead of being redelivered forever (apps/core/worker/deliveries.py).
app = Celery("backend", task_cls="apps.core.worker.deliveries:DeliveryLimitedTask")
# The app apps code reaches as `celery.app.default_app` (it never imports this
# module), in every thread; an app created later, such as a test's own sender,
# becomes only its thread's current app.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["consumer"].add(WorkerLiveness)


@app.on_after_configure.connect
def _queues_and_schedule(sender: Celery, **kwargs: Any) -> None:
    """Declare the queues and the beat schedule once the settings are read.

    Not at import: config/__init__.py imports this module while the settings
    module may still be loading (one that star-imports config.settings, as a
    test's does), and reading app.conf then would read it half-built. The first
    read of app.conf, by the worker, beat or a sender, configures the app and
    runs this before the value is returned. Queues or a schedule already given
    in the settings (CELERY_TASK_QUEUES, CELERY_BEAT_SCHEDULE) are kept; a module
    that sets app.conf.beat_schedule after importing the app (the test beat app,
    tests/support/beat_app.py) replaces this one, as it did when it was set at
    import.
    """
    queues = sender.conf.worker_queues
    if not sender.conf.task_queues:
        sender.conf.task_queues = [Queue(name) for name in queues]
    # The beat schedule, in one place. Every entry expires before its next run, so
    # a backlog (worker down for an hour) never turns into a burst of stale runs.
    if not sender.conf.beat_schedule:
        sender.conf.beat_schedule = _beat_schedule(queues)


def _beat_schedule(queues: list[str]) -> dict[str, dict[str, Any]]:
    return {
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
        # Cheap (one INFO, one GET): a failover is reconciled within seconds.
        "gate-check-server": {
            "task": "inventory.gate_check_server",
            "schedule": 15.0,
            "options": {"expires": 14},
        },
        **queue_canaries(queues),
    }
