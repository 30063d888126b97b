"""The inventory's domain errors: business rules that refuse a request.

Each is a DomainError (apps/core/drf/exceptions.py): the exception handler answers
it with its status and code in the project's error body.
"""

from __future__ import annotations

from rest_framework import status

from apps.core.drf.exceptions import DomainError


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
