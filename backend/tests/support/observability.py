"""What the shipped Grafana dashboard and alert rules query, and what is exported."""

from __future__ import annotations

import json
import re

from tests.support.processes import ROOT


def dashboard_metric_names() -> set[str]:
    """Every metric name the dashboard's panels and the alert rules query."""
    dashboard = json.loads(
        (ROOT / "deploy/observability/grafana-dashboard.json").read_text()
    )
    alerts = (ROOT / "deploy/observability/alerts.yml").read_text()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + [alerts]
    names = set()
    for expr in exprs:
        names |= set(
            re.findall(r"\b((?:django|celery|inventory|health)_[a-z0-9_]+)", expr)
        )
    return names


def sample_names(exposition: str) -> set[str]:
    """The metric names of a Prometheus text exposition's samples."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


# What the tests' workers are started with (METRICS_TOKEN) to read their metrics port.
WORKER_METRICS_TOKEN = "worker-metrics-" + "t" * 24


def worker_metrics(port: int, token: str = WORKER_METRICS_TOKEN) -> str:
    """Scrape a worker's metrics port as Prometheus does, with the bearer token."""
    import requests

    response = requests.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    response.raise_for_status()
    return response.text
