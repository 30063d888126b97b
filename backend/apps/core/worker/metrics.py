"""The worker's metric families: Celery task outcomes, run times and exhausted
deliveries, written by the pool processes (apps/core/worker/task_metrics.py,
apps/core/worker/deliveries.py) and served by the worker's main process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

celery_tasks = Counter(
    "celery_tasks_total",
    "Celery tasks finished, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
celery_task_deliveries_exhausted = Counter(
    "celery_task_deliveries_exhausted",
    "Tasks recorded as failed after CELERY_TASK_MAX_DELIVERIES deliveries without "
    "finishing (a poison task killing its worker), by task name.",
    ["task"],
)
celery_task_duration = Histogram(
    "celery_task_duration_seconds",
    "Run time of Celery tasks, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
