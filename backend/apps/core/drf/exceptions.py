"""DRF's side of the one error scheme: the base of domain errors, the exception
handler that gives every API error the project's body, and that body's schema.

Body: {"error": {"code", "message", "details"}, "request_id"} (built by
apps/core/http/errors.py, also for errors outside DRF). A 500's body never carries a
traceback; the traceback goes to the log (and Sentry) with the same id.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.http.errors import error_body

logger = logging.getLogger(__name__)


class DomainError(drf_exceptions.APIException):
    """A business rule refused the request; carries structured details."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(detail=message or self.default_detail, code=self.default_code)
        self.message = message or str(self.default_detail)
        self.details = details


def _code_of(exc: drf_exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF exception handler: map every exception to the project's error body."""
    from django.db import DatabaseError, InterfaceError, OperationalError

    if isinstance(exc, DomainError):
        body = error_body(
            code=exc.default_code, message=exc.message, details=exc.details
        )
        return Response(body, status=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable or went away: a retryable 503, not a 500.
        logger.error("database unavailable: %s", exc, exc_info=exc)
        body = error_body(
            code="service_unavailable", message="The database is unavailable; retry."
        )
        return Response(body, status=503, headers={"Retry-After": "5"})
    if isinstance(exc, RequestDataTooBig):
        body = error_body(code="request_too_large", message="Request body too large.")
        return Response(body, status=413)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or isinstance(exc, DatabaseError):
        logger.error("unhandled error in API view", exc_info=exc)
        body = error_body(code="server_error", message="Internal server error.")
        return Response(body, status=500)
    assert isinstance(exc, drf_exceptions.APIException)
    if isinstance(exc, drf_exceptions.ValidationError):
        body = error_body(
            code="invalid", message="The request is invalid.", details=exc.detail
        )
    else:
        body = error_body(code=_code_of(exc), message=str(exc.detail))
    response.data = body
    return response


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorOutput(serializers.Serializer):
    """The project's error body (every 4xx and 5xx)."""

    error = ErrorDetail()
    request_id = serializers.CharField(allow_null=True)
