"""Admin for accounts, methods and payments; money moves only through services."""

from django.contrib import admin

from payments.models import Account, OutboxMessage, Payment, PaymentMethod
from sagas.outbox_admin import OutboxMessageAdmin, ReadOnlyAdminMixin


@admin.register(Account)
class AccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "customer", "balance", "credited", "created_at")
    list_select_related = ("customer",)
    fields = ("id", "customer", "balance", "credited", "created_at", "updated_at")
    readonly_fields = fields


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "label", "account", "active", "created_at")
    list_filter = ("active",)
    fields = ("id", "label", "account", "active", "created_at", "updated_at")
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "order_ref",
        "account",
        "method",
        "amount",
        "status",
        "created_at",
        "refunded_at",
    )
    list_filter = ("status",)
    list_select_related = ("method",)
    fields = (
        "id",
        "order_ref",
        "account",
        "method",
        "amount",
        "status",
        "created_at",
        "refunded_at",
    )
    readonly_fields = fields


admin.site.register(OutboxMessage, OutboxMessageAdmin)
