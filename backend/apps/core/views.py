"""Views of the core app: the protected Prometheus endpoint."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core.exceptions import json_error
from apps.core.metrics_auth import metrics_refusal


def metrics(request: HttpRequest) -> HttpResponse:
    """Serve Prometheus metrics to holders of METRICS_TOKEN only."""
    refusal = metrics_refusal(
        token=settings.METRICS_TOKEN,
        authorization=request.headers.get("Authorization", ""),
    )
    if refusal is not None:
        response = json_error(*refusal)
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from apps.core.metrics import metrics_registry

    return HttpResponse(
        generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST
    )
