"""The probe paths, written once (runtime/probes.py), as each consumer needs them."""

from __future__ import annotations

import re

from django.conf import settings
from django.urls import resolve

from apps.core.http import readiness
from runtime import probes


def test_redirect_exemptions_match_exactly_the_probe_and_metrics_paths() -> None:
    assert settings.SECURE_REDIRECT_EXEMPT == [
        r"^health/$",
        r"^health/ready/$",
        r"^metrics$",
    ]
    # SecurityMiddleware matches the path without its leading slash.
    exempt = [
        p
        for p in ("health/", "health/ready/", "metrics", "health/x", "metricsx")
        if any(re.search(r, p) for r in settings.SECURE_REDIRECT_EXEMPT)
    ]
    assert exempt == ["health/", "health/ready/", "metrics"]


def test_the_routes_serve_the_probe_paths() -> None:
    assert resolve(probes.LIVENESS_PATH).func is readiness.liveness
    assert resolve(probes.READINESS_PATH).func is readiness.readiness
    assert resolve(probes.METRICS_PATH).url_name == "metrics"
