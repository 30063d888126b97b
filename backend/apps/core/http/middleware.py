"""Middleware: probes answered early, response headers, body size, lean messages and
Prometheus series (request ids: apps/core/http/request_ids.py)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.messages.middleware import MessageMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from django_prometheus import middleware as prometheus_middleware

from runtime.probes import LIVENESS_PATH, METRICS_PATH, READINESS_PATH

PROBE_AND_METRICS_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH, METRICS_PATH})
API_PATH_PREFIX = "/api/v1/"
# The admin loads only its own scripts, styles and images. Inline styles stay
# allowed: admin widgets set style attributes; scripts cannot be injected inline.
ADMIN_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class HealthCheckMiddleware:
    """Answer /health/, /health/ready/ and /metrics before Host validation and HTTPS
    redirects.

    Load balancers (ALB, ECS, Kubernetes) probe with the task's private IP as Host and
    over plain HTTP; widening ALLOWED_HOSTS for them would weaken every other path.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from apps.core.http import readiness

        if request.method not in {"GET", "HEAD"}:
            if request.path in PROBE_AND_METRICS_PATHS:
                # Answered here, in the JSON error body: past this point the CSRF
                # middleware would answer a POST with Django's HTML page.
                from apps.core.http.errors import json_error

                response = json_error(405, "method_not_allowed", "Method not allowed.")
                response["Allow"] = "GET, HEAD"
                return response
        else:
            if request.path == LIVENESS_PATH:
                return readiness.liveness(request)
            if request.path == READINESS_PATH:
                return readiness.readiness(request)
            if request.path == METRICS_PATH:
                # Prometheus scrapes each task by its private address over plain
                # HTTP; the bearer token, not the Host header, guards this path.
                from apps.core.http.metrics import metrics

                return metrics(request)
        return self.get_response(request)


class ResponseHeadersMiddleware:
    """`Cache-Control: no-store` on API answers, a Content-Security-Policy on the
    admin's pages.

    Every /api/v1/ answer is for an authenticated caller (or an error): a shared
    cache or the browser's must not keep a user's reservations or a staff view of
    the stock. Django 5.2 has no CSP of its own.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.conf import settings

        self.get_response = get_response
        self.admin_prefix = "/" + settings.ADMIN_URL

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path
        if path.startswith(API_PATH_PREFIX):
            response.setdefault("Cache-Control", "no-store, private")
        elif path.startswith(self.admin_prefix):
            response.setdefault(
                "Content-Security-Policy", ADMIN_CONTENT_SECURITY_POLICY
            )
        return response


class BodySizeLimitMiddleware:
    """Refuse a declared body above MAX_REQUEST_BODY_BYTES with 413, before reading it.

    Django's own DATA_UPLOAD_MAX_MEMORY_SIZE still guards bodies without a length.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        from apps.core.http.errors import json_error

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "bad_request", "Invalid Content-Length.")
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return json_error(
                413,
                "request_too_large",
                f"Request body above {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            )
        return self.get_response(request)


class LazyMessageMiddleware(MessageMiddleware):
    """Django's messages, with the storage built on first use (the admin) instead of
    on every API request (a cookie and a session storage each time)."""

    def process_request(self, request: HttpRequest) -> None:
        from django.contrib.messages.storage import default_storage

        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(
        self, request: HttpRequest, response: HttpResponse
    ) -> HttpResponse:
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never used: nothing to store
        return super().process_response(request, response)


class PrometheusAfterMiddleware(prometheus_middleware.PrometheusAfterMiddleware):
    """django_prometheus's request metrics (same names and labels), with each
    labelled series looked up once per process instead of ~10 times per request."""

    max_series = 10_000

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._series: dict[tuple, object] = {}

    def label_metric(self, metric, request, response=None, **labels):
        if not labels:
            return metric
        key = (id(metric), *labels.items())
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.max_series:
                self._series.clear()
            series = self._series[key] = metric.labels(**labels)
        return series
