"""Admin for products and reservations; stock counts move only through services."""

from django.contrib import admin

from inventory.models import OutboxMessage, Product, StockReservation
from inventory.services import product_update
from sagas.outbox_admin import OutboxMessageAdmin, ReadOnlyAdminMixin

STOCK_FIELDS = ("available", "reserved", "sold", "received")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", *STOCK_FIELDS)
    search_fields = ("sku", "name")
    fields = ("sku", "name", "price", *STOCK_FIELDS, "created_at", "updated_at")
    readonly_fields = ("sku", *STOCK_FIELDS, "created_at", "updated_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # a product is created stocked, by inventory.services

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # reservations and orders refer to it

    def save_model(self, request, obj, form, change) -> None:
        product_update(sku=obj.sku, name=obj.name, price=obj.price)


@admin.register(StockReservation)
class StockReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "order_ref",
        "product",
        "quantity",
        "status",
        "created_at",
        "updated_at",
    )
    list_filter = ("status",)
    list_select_related = ("product",)
    fields = (
        "id",
        "order_ref",
        "product",
        "quantity",
        "status",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


admin.site.register(OutboxMessage, OutboxMessageAdmin)
