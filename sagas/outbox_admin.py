"""Read-only admin building blocks, and the one outbox admin every app registers."""

import contextlib
import json
import uuid

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

ERROR_CHARS = 80


def pretty_json(value: object) -> str:
    """JSON indented in a <pre>, for the detail page of a row that carries some."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="margin: 0">{}</pre>', text)


def truncated(text: str, chars: int = ERROR_CHARS) -> str:
    return Truncator(text).chars(chars) if text else "-"


class ReadOnlyAdminMixin:
    """Shows rows that only services write: no add, no edit, no delete.

    Without change permission the admin renders every field as text and its form
    saves nothing, so a page left open can never write stale values over a row a
    service changed meanwhile.
    """

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request, model_admin):
        return [("no", "Pending"), ("yes", "Published"), ("dead", "Dead")]

    def queryset(self, request, queryset):
        # "Pending" is the relay's own condition, served by the partial due index.
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True, dead_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "dead":
            return queryset.filter(dead_at__isnull=False)
        return queryset


class OutboxMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Any app's outbox table, registered in one line by the app's own admin module.

    Rows are written with the change they announce and marked published by the
    relay; the admin only shows them.
    """

    list_display = (
        "id",
        "topic",
        "aggregate_id",
        "created_at",
        "published_at",
        "dead_at",
        "attempts",
        "short_error",
    )
    list_filter = (PublishedFilter, "topic")
    search_fields = ("aggregate_id", "message_id")
    search_help_text = "Exact aggregate id or message id."
    ordering = ("-id",)
    # Counting the whole table on every filtered page is the slowest query here.
    show_full_result_count = False
    fields = (
        "id",
        "message_id",
        "topic",
        "aggregate_id",
        "payload_pretty",
        "created_at",
        "published_at",
        "attempts",
        "next_attempt_at",
        "dead_at",
        "last_error",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Payloads are only read on the detail page, which fetches its one on access.
        return super().get_queryset(request).defer("payload")

    def get_search_results(self, request, queryset, search_term):
        # Exact matches only: both columns are indexed, a substring search is not.
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(aggregate_id=term)
        with contextlib.suppress(ValueError):  # not a UUID: not a message id
            match |= Q(message_id=uuid.UUID(term))
        return queryset.filter(match), False

    @admin.display(description="last error")
    def short_error(self, message) -> str:
        return truncated(message.last_error)

    @admin.display(description="payload")
    def payload_pretty(self, message) -> str:
        return pretty_json(message.payload)
