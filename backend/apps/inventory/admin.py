"""Admin: stock is read-only here (changes go through services, so the ledger holds)."""

from django.contrib import admin

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
    inlines = [StockInline]


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
