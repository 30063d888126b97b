"""Views of the core app: the protected Prometheus endpoint."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core.exceptions import json_error


def metrics(request: HttpRequest) -> HttpResponse:
    """Serve Prometheus metrics to holders of METRICS_TOKEN only."""
    token = settings.METRICS_TOKEN
    if not token:
        # No token configured: the endpoint does not exist for anyone.
        return json_error(404, "not_found", "Not found.")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        response = json_error(401, "not_authenticated", "Bearer token required.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode()):
        return json_error(403, "permission_denied", "Invalid metrics token.")
    from apps.core.metrics import metrics_registry

    return HttpResponse(
        generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST
    )
