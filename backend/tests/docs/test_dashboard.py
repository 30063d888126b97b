"""The dashboard and alert rules query only metrics the app really exports."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.support.net import free_port
from tests.support.observability import (
    WORKER_METRICS_TOKEN,
    dashboard_metric_names,
    sample_names,
    worker_metrics,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
HTTPS = {"X-Forwarded-Proto": "https"}


def test_every_queried_metric_is_exported(
    start_gunicorn, start_entrypoint, make_product, make_user
) -> None:
    from rest_framework.authtoken.models import Token

    from config.celery import app

    token = "m" * 40
    web = start_gunicorn(METRICS_TOKEN=token)
    product = make_product(on_hand=5)
    auth = {"Authorization": f"Token {Token.objects.create(user=make_user()).key}"}
    requests.get(
        f"{web.base_url}/api/v1/products/{product.sku}/",
        headers={**auth, **HTTPS},
        timeout=5,
    )
    requests.post(
        f"{web.base_url}/api/v1/reservations/",
        json={"sku": product.sku, "quantity": 1},
        headers={**auth, **HTTPS},
        timeout=5,
    )
    requests.get(f"{web.base_url}/health/ready/", timeout=5)
    requests.get(f"{web.base_url}/nope/", headers=HTTPS, timeout=5)
    web_metrics = requests.get(
        f"{web.base_url}/metrics",
        headers={"Authorization": f"Bearer {token}", **HTTPS},
        timeout=5,
    ).text

    queue = f"test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    worker = start_entrypoint(
        "worker",
        WORKER_METRICS_PORT=str(port),
        CELERY_WORKER_QUEUES=queue,
        METRICS_TOKEN=WORKER_METRICS_TOKEN,
    )
    worker.wait_for_line(lambda line: "ready." in line, timeout=60)
    app.send_task("inventory.expire_reservations", queue=queue)
    app.send_task("inventory.reconcile_inventory_redis_db", queue=queue)

    def worker_scrape() -> str:
        return worker_metrics(port)

    wait_until(
        lambda: (
            'celery_tasks_total{outcome="success",'
            'task="inventory.reconcile_inventory_redis_db"}' in worker_scrape()
        ),
        30,
        "both tasks in the worker's metrics",
    )
    exported = sample_names(web_metrics) | sample_names(worker_scrape())
    queried = dashboard_metric_names()
    assert len(queried) >= 12
    assert sorted(queried - exported) == []
