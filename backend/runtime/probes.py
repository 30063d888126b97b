"""The paths load balancers and Prometheus call, written once.

Django-free: the container healthcheck and gunicorn's access logger import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LIVENESS_PATH = "/health/"
READINESS_PATH = "/health/ready/"
METRICS_PATH = "/metrics"
# Probes arrive every few seconds from every load balancer.
PROBE_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH})


def route(path: str) -> str:
    """Return `path` as a Django URL pattern (no leading slash)."""
    return path.removeprefix("/")


def exact_path_patterns(paths: Iterable[str]) -> list[str]:
    """Return regexes matching exactly `paths`, as SecurityMiddleware compares them
    (without the leading slash)."""
    return [f"^{re.escape(route(path))}$" for path in paths]
