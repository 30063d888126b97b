"""Metrics that span processes: Celery task outcomes and the failed-task backlog."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

readiness_checks = Counter(
    "health_readiness_checks_total",
    "Readiness probe answers, by status (ok, degraded, unavailable, draining).",
    ["status"],
)
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


class FailedTaskCollector(Collector):
    """The number of failed tasks not yet re-enqueued, read from the database."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from apps.core.models import FailedTask

        gauge = GaugeMetricFamily(
            "celery_failed_tasks_pending",
            "Failed tasks recorded and not re-enqueued yet (FailedTask rows).",
        )
        try:
            gauge.add_metric([], FailedTask.objects.filter(requeued_at=None).count())
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on the DB
            logger.warning("failed-task gauge unavailable: %s", exc)
            return
        yield gauge


def metrics_registry() -> CollectorRegistry:
    """Return a registry with every process's metrics plus the database gauges."""
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if not any(isinstance(c, FailedTaskCollector) for c in _registered(registry)):
        registry.register(FailedTaskCollector())
    return registry


def _registered(registry: CollectorRegistry) -> list:
    return list(getattr(registry, "_collector_to_names", {}))
