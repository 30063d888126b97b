"""Baseline views: the same JSON as /health/, and the product detail by raw cursor."""

from django.db import connection
from django.http import Http404, JsonResponse
from django.urls import path


def health(request):
    return JsonResponse({"status": "ok"})


def product(request, sku):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.sku, p.name, p.active, s.on_hand, s.reserved "
            "FROM inventory_product p JOIN inventory_stock s ON s.product_id = p.id "
            "WHERE p.sku = %s AND p.active",
            [sku],
        )
        row = cursor.fetchone()
    if row is None:
        raise Http404
    sku, name, active, on_hand, reserved = row
    return JsonResponse(
        {
            "sku": sku,
            "name": name,
            "active": active,
            "on_hand": on_hand,
            "reserved": reserved,
            "available": on_hand - reserved,
        }
    )


urlpatterns = [
    path("health/", health),
    path("api/v1/products/<str:sku>/", product),
]
