"""Middleware: probes answered early, request ids on every request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core.client_ip import client_ip
from apps.core.context import request_id_accept, request_id_var

REQUEST_ID_HEADER = "X-Request-ID"


class HealthCheckMiddleware:
    """Answer /health/ and /health/ready/ before Host validation and HTTPS redirects.

    Load balancers (ALB, ECS, Kubernetes) probe with the task's private IP as Host and
    over plain HTTP; widening ALLOWED_HOSTS for them would weaken every other path.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from apps.core import health

        if request.method in {"GET", "HEAD"}:
            if request.path == "/health/":
                return health.liveness(request)
            if request.path == "/health/ready/":
                return health.readiness(request)
        return self.get_response(request)


class RequestIdMiddleware:
    """Accept a sane X-Request-ID or make one; expose it to logs and the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_accept(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_ip = client_ip(request)  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
