"""One error scheme: domain errors and the JSON body every error response uses.

Body: {"error": {"code", "message", "details"}, "request_id"}. A 500's body never
carries a traceback; the traceback goes to the log (and Sentry) with the same id.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from runtime.context import request_id_get
from runtime.error_document import error_document

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


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "A dependency is unavailable; retry shortly."


def error_body(*, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the project's error body for the current request."""
    return error_document(
        code=code, message=message, details=details, request_id=request_id_get()
    )


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


def json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message), status=status_code)


def handler400(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(400, "bad_request", "Bad request.")


def handler403(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(403, "permission_denied", "Permission denied.")


def handler404(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return json_error(500, "server_error", "Internal server error.")


# --- Inventory domain errors -------------------------------------------------------


class NotFoundError(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"
    default_detail = "Not found."


class ProductNotFound(NotFoundError):
    default_code = "product_not_found"
    default_detail = "No active product has this SKU."


class ReservationNotFound(NotFoundError):
    default_code = "reservation_not_found"
    default_detail = "No such reservation."


class InsufficientStock(DomainError):
    default_code = "insufficient_stock"
    default_detail = "Not enough stock available."


class ReservationExpired(DomainError):
    default_code = "reservation_expired"
    default_detail = "The reservation has expired."


class ReservationNotActive(DomainError):
    default_code = "reservation_not_active"
    default_detail = "The reservation is no longer active."


class IdempotencyKeyReused(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request."


class ProductExists(DomainError):
    default_code = "product_exists"
    default_detail = "A product with this SKU exists."


class ReservationLimitExceeded(DomainError):
    default_code = "reservation_limit_exceeded"
    default_detail = "This account holds the most units allowed in active reservations."


class ReservationRateExceeded(DomainError):
    default_code = "reservation_rate_exceeded"
    default_detail = (
        "This account reserved the most units allowed in the last hour; retry later."
    )


class ConfirmNotAllowed(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "permission_denied"
    default_detail = (
        "Only the storefront (inventory.confirm_reservation) or staff may confirm."
    )
