"""The Celery app: reliability settings (config/settings.py) and the beat schedule.

Started by the entrypoint as `celery -A config worker` / `celery -A config beat`.
What runs around tasks lives in apps/core/worker, connected here by importing it:
log lines and request ids (task_context), worker metrics (task_metrics), failure
records (task_failures), heartbeats and canaries (liveness/wiring).
"""

from __future__ import annotations

import os

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
app.conf.task_queues = [Queue(name) for name in app.conf.worker_queues]
app.autodiscover_tasks()
app.steps["consumer"].add(WorkerLiveness)

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
    # Cheap (one INFO, one GET): a failover is reconciled within seconds.
    "gate-check-server": {
        "task": "inventory.gate_check_server",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    **queue_canaries(app.conf.worker_queues),
}
