"""Views of the core app: the protected Prometheus endpoint, the admin's login."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core.exceptions import json_error
from apps.core.metrics_auth import metrics_refusal


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
    from apps.core.metrics import metrics_registry

    return HttpResponse(
        generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST
    )


def admin_login(
    request: HttpRequest, extra_context: dict | None = None
) -> HttpResponse:
    """The admin's login page; 429 while the failed-login brake refuses the account
    or the address, so that monitoring and proxies see a refusal, not a form."""
    response = admin.site.login(request, extra_context)
    if getattr(request, "login_braked", False) and response.status_code == 200:
        response.status_code = 429
    return response
