"""Inventory HTTP API: thin views over services and selectors."""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.drf.exceptions import DomainError, ErrorOutput
from apps.inventory import selectors, services
from apps.inventory.models import SKU_PATTERN
from apps.inventory.serializers import (
    ProductCreateInput,
    ProductOutput,
    ReservationCreateInput,
    ReservationOutput,
    RestockInput,
    reservation_create_input,
    reservation_document,
)

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,255}$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN.strip("^$"))
EXAMPLE_SKU = "WIDGET-1"
EXAMPLE_RESERVATION_ID = "0b6f3c1e-6d59-4d7e-9c2a-5a0f4a1f8e21"

SKU_PARAMETER = OpenApiParameter(
    "sku",
    {"type": "string", "pattern": SKU_PATTERN},
    OpenApiParameter.PATH,
    examples=[OpenApiExample("A SKU", value=EXAMPLE_SKU)],
)
RESERVATION_ID_PARAMETER = OpenApiParameter(
    "reservation_id",
    {"type": "string", "format": "uuid"},
    OpenApiParameter.PATH,
    examples=[OpenApiExample("A reservation id", value=EXAMPLE_RESERVATION_ID)],
)
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "maxLength": 255},
    OpenApiParameter.HEADER,
    # No example value: every client and every generator copies an example, so a
    # fixed key would have them all reuse one key with different bodies (422). The
    # form is described instead.
    description="A key the client makes unique per intended reservation, e.g. its "
    "order id followed by `:` and the attempt's number, or a UUID. A retry with the "
    "same key gets the first request's answer (201, same body, header "
    "Idempotent-Replayed: true), waiting for it if it is still running; reuse with "
    "a different body is 422.",
)


class InvalidIdempotencyKey(DomainError):
    status_code = 400
    default_code = "invalid"
    default_detail = "Idempotency-Key must be 1-255 characters of A-Z a-z 0-9 . _ : -"


def errors(*codes: int) -> dict[int, type]:
    # 503: the exception handler's answer when the database is unreachable, which
    # any operation can meet (tests/hostile/test_declared_statuses.py).
    return {code: ErrorOutput for code in (400, 401, 403, 429, *codes, 503)}


class ProductListCreate(GenericAPIView):
    serializer_class = ProductOutput

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsAdminUser()]
        return [IsAuthenticated()]

    def get_queryset(self):
        return selectors.product_list(include_inactive=self.request.user.is_staff)

    @extend_schema(responses={200: ProductOutput(many=True), **errors()})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ProductOutput(page, many=True).data)

    @extend_schema(
        request=ProductCreateInput,
        # 404: the product is read back after its commit (a concurrent delete).
        responses={201: ProductOutput, **errors(404, 409)},
        examples=[
            OpenApiExample(
                "A new product",
                value={"sku": EXAMPLE_SKU, "name": "Widget"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = ProductCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.product_create(**data.validated_data)
        return Response(ProductOutput(product).data, status=status.HTTP_201_CREATED)


class ProductDetail(GenericAPIView):
    serializer_class = ProductOutput

    @extend_schema(
        parameters=[SKU_PARAMETER], responses={200: ProductOutput, **errors(404)}
    )
    def get(self, request: Request, sku: str) -> Response:
        # Already in ProductOutput's shape: no serializer on the hottest read.
        return Response(
            selectors.product_detail(sku=sku, include_inactive=request.user.is_staff)
        )


class ProductRestock(GenericAPIView):
    serializer_class = ProductOutput
    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(
        request=RestockInput,
        parameters=[SKU_PARAMETER],
        responses={200: ProductOutput, **errors(404)},
        examples=[
            OpenApiExample("Ten units", value={"quantity": 10}, request_only=True)
        ],
    )
    def post(self, request: Request, sku: str) -> Response:
        data = RestockInput(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.stock_restock(
            sku=sku, quantity=data.validated_data["quantity"], actor=request.user
        )
        return Response(ProductOutput(product).data)


class ReservationCreate(GenericAPIView):
    serializer_class = ReservationOutput

    @extend_schema(
        request=ReservationCreateInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        examples=[
            OpenApiExample(
                "Two units for ten minutes",
                value={"sku": EXAMPLE_SKU, "quantity": 2, "ttl_seconds": 600},
                request_only=True,
            )
        ],
        responses={
            201: ReservationOutput,
            **errors(404, 409, 422),
        },
    )
    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise InvalidIdempotencyKey()
        result = services.reservation_create(
            owner=request.user,
            idempotency_key=key,
            **reservation_create_input(request.data),
        )
        # A replay answers exactly as the first request did.
        headers = {} if result.created else {"Idempotent-Replayed": "true"}
        return Response(
            reservation_document(result.reservation),
            status=status.HTTP_201_CREATED,
            headers=headers,
        )


class ReservationDetail(GenericAPIView):
    serializer_class = ReservationOutput

    @extend_schema(
        parameters=[RESERVATION_ID_PARAMETER],
        responses={200: ReservationOutput, **errors(404)},
    )
    def get(self, request: Request, reservation_id: str) -> Response:
        reservation = selectors.reservation_get(
            reservation_id=reservation_id, viewer=request.user
        )
        return Response(reservation_document(reservation))


class ReservationConfirm(GenericAPIView):
    serializer_class = ReservationOutput

    @extend_schema(
        request=None,
        parameters=[RESERVATION_ID_PARAMETER],
        responses={200: ReservationOutput, **errors(404, 409)},
    )
    def post(self, request: Request, reservation_id: str) -> Response:
        reservation = services.reservation_confirm(
            reservation_id=reservation_id, actor=request.user
        )
        return Response(reservation_document(reservation))


class ReservationCancel(GenericAPIView):
    serializer_class = ReservationOutput

    @extend_schema(
        request=None,
        parameters=[RESERVATION_ID_PARAMETER],
        responses={200: ReservationOutput, **errors(404, 409)},
    )
    def post(self, request: Request, reservation_id: str) -> Response:
        reservation = services.reservation_cancel(
            reservation_id=reservation_id, actor=request.user
        )
        return Response(reservation_document(reservation))
