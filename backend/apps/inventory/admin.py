"""Admin: stock is read-only here (changes go through services, so the ledger holds)."""

from django.contrib import admin

from apps.inventory import services
from apps.inventory.models import Product, Reservation, Stock, StockMovement


class StockInline(admin.StackedInline):
    model = Stock
    can_delete = False
    readonly_fields = ("on_hand", "reserved", "updated_at")
    fields = readonly_fields


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("sku", "name")

    def get_fields(self, request, obj=None):
        # A new product starts active with empty stock, as through the API.
        return ("sku", "name") if obj is None else ("sku", "name", "active")

    def get_readonly_fields(self, request, obj=None):
        # The SKU keys the Redis counter, reservations and the ledger: fixed for good.
        return () if obj is None else ("sku",)

    def get_inlines(self, request, obj):
        return [] if obj is None else [StockInline]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            # Through the service: deactivating drops the product's gate counter.
            services.product_update(product=obj)
            return
        # Through the service: the stock row, the gate counter and the same rules
        # as the API. The admin then logs and redirects with this object.
        created = services.product_create(sku=obj.sku, name=obj.name)
        obj.pk = created.pk
        obj.active = created.active
        obj.created_at = created.created_at
        obj.updated_at = created.updated_at
        obj._state.adding = False


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "owner", "quantity", "status", "expires_at")
    list_filter = ("status",)
    search_fields = ("product__sku", "id")
    list_select_related = ("product", "owner")
    readonly_fields = [f.name for f in Reservation._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "product",
        "kind",
        "quantity",
        "on_hand_delta",
        "reserved_delta",
        "reservation",
        "actor",
    )
    list_filter = ("kind",)
    search_fields = ("product__sku",)
    list_select_related = ("product", "actor")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
