"""Admin for orders and shipments: read-only, as an order changes only by its saga."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from orders import selectors
from orders.models import Order, OrderLine, OutboxMessage, Shipment
from sagas.admin.links import register_subject
from sagas.outbox_admin import OutboxMessageAdmin, ReadOnlyAdminMixin, ReadOnlyInline


def saga_link(saga_id: int | None) -> str:
    # A URL, not a join: the saga lives in the engine's app and is only referred to.
    if saga_id is None:
        return "-"
    url = reverse("admin:sagas_saga_change", args=[saga_id])
    return format_html('<a href="{}">saga {}</a>', url, saga_id)


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ("sku", "quantity", "unit_price")
    readonly_fields = fields


class ShipmentInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = Shipment
    can_delete = False
    fields = ("tracking_code", "destination", "created_at")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "status",
        "total",
        "ship_to",
        "saga",
        "created_at",
    )
    list_filter = ("status",)
    list_select_related = ("customer",)
    inlines = (OrderLineInline, ShipmentInline)
    fields = (
        "id",
        "customer",
        "status",
        "total",
        "payment_method_id",
        "ship_to",
        "cancel_reason",
        "saga",
        "idempotency_key",
        "request_fingerprint",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="saga", ordering="saga_id")
    def saga(self, order: Order) -> str:
        return saga_link(order.saga_id)


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "tracking_code", "order", "destination", "created_at")
    list_filter = ("destination",)
    list_select_related = ("order",)
    search_fields = ("=tracking_code",)
    fields = ("id", "tracking_code", "order", "destination", "created_at")
    readonly_fields = fields


admin.site.register(OutboxMessage, OutboxMessageAdmin)


def _sagas_of_order(order_id: int) -> list[int]:
    return selectors.order_saga_ids(order_id=order_id)


# A purchase saga is about an order: its page links to the order's, and the saga
# list finds it by the order's id.
register_subject(
    "purchase",
    label="order",
    context_key="order_id",
    url_name="admin:orders_order_change",
    sagas_of=_sagas_of_order,
)
