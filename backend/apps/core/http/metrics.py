"""Web's /metrics: the Prometheus endpoint, for holders of METRICS_TOKEN only, with
every process's metrics plus the readiness answers and the failed-task backlog."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.core.http.errors import json_error
from apps.core.http.metrics_auth import metrics_refusal

logger = logging.getLogger(__name__)

readiness_checks = Counter(
    "health_readiness_checks_total",
    "Readiness probe answers, by status (ok, degraded, unavailable, draining).",
    ["status"],
)


def metrics(request: HttpRequest) -> HttpResponse:
    """Serve Prometheus metrics to holders of METRICS_TOKEN only."""
    refusal = metrics_refusal(
        token=settings.METRICS_TOKEN,
        previous=settings.METRICS_TOKEN_PREVIOUS,
        authorization=request.headers.get("Authorization", ""),
    )
    if refusal is not None:
        response = json_error(*refusal)
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST
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
