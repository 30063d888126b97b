from django.urls import path

from apps.inventory import api

urlpatterns = [
    path("products/", api.ProductListCreate.as_view(), name="product-list"),
    path("products/<str:sku>/", api.ProductDetail.as_view(), name="product-detail"),
    path(
        "products/<str:sku>/restock/",
        api.ProductRestock.as_view(),
        name="product-restock",
    ),
    path("reservations/", api.ReservationCreate.as_view(), name="reservation-create"),
    path(
        "reservations/<uuid:reservation_id>/",
        api.ReservationDetail.as_view(),
        name="reservation-detail",
    ),
    path(
        "reservations/<uuid:reservation_id>/confirm/",
        api.ReservationConfirm.as_view(),
        name="reservation-confirm",
    ),
    path(
        "reservations/<uuid:reservation_id>/cancel/",
        api.ReservationCancel.as_view(),
        name="reservation-cancel",
    ),
]
