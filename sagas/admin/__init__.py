"""Admin for operators: find failed or stuck sagas, read their trail, retry or cancel.

Sagas are read-only here; the only writes are the operator actions, and each one is a
call to sagas.lifecycle, which locks the saga and records who acted in its events.
"""

import re
from collections.abc import Callable, Iterable

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from sagas import diagrams, lifecycle, registry, selectors
from sagas.exceptions import ActionNotAllowed, DefinitionError
from sagas.models import (
    ACTIVE_STATUSES,
    OutboxMessage,
    Saga,
    SagaEvent,
    SagaStatus,
    SagaStep,
)
from sagas.outbox_admin import (
    OutboxMessageAdmin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    pretty_json,
    seconds,
    truncated,
)

CANCEL_REASON = "cancelled from the admin"
_DIGITS = re.compile("[0-9]{1,19}")

STATUS_COLOURS = {
    SagaStatus.PENDING: "#447e9b",
    SagaStatus.RUNNING: "#447e9b",
    SagaStatus.COMPENSATING: "#c97a00",
    SagaStatus.COMPLETED: "#2e7d32",
    SagaStatus.COMPENSATED: "#666666",
    SagaStatus.FAILED: "#ba2121",
}


class AttentionFilter(admin.SimpleListFilter):
    title = "attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("needed", "Needs attention"), ("overdue", "Overdue")]

    def queryset(self, request, queryset):
        if self.value() == "needed":
            # FAILED, or still active but unable to move on its own.
            return queryset.filter(selectors.sagas_needing_attention_q())
        if self.value() == "overdue":
            # Work in flight past its deadline: queued behind a backlog, or lost and
            # about to be resent by the recovery sweep; served by the partial index.
            return queryset.filter(
                status__in=ACTIVE_STATUSES, deadline_at__lt=timezone.now()
            )
        return queryset


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    ordering = ("index",)
    fields = (
        "index",
        "name",
        "status",
        "attempts",
        "started_at",
        "finished_at",
        "duration_ms",
        "error",
        "task_id",
        "compensation_attempts",
        "compensated_at",
        "compensation_error",
    )
    readonly_fields = fields


class SagaEventInline(ReadOnlyInline):
    model = SagaEvent
    ordering = ("id",)
    fields = ("created_at", "kind", "step_name", "actor", "detail")
    readonly_fields = fields


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "mode",
        "status_badge",
        "current_step_name",
        "created_at",
        "updated_at",
        "finished_at",
        "duration",
        "short_error",
    )
    list_filter = ("status", "mode", "name", AttentionFilter)
    search_fields = ("idempotency_key",)
    search_help_text = "Exact saga id or idempotency key."
    # No column needs a related row, so no join either.
    list_select_related = False
    # Counting the whole table on every filtered page is the slowest query here.
    show_full_result_count = False
    actions = ("retry_sagas", "cancel_sagas")
    inlines = (SagaStepInline, SagaEventInline)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "name",
                    "mode",
                    "status_badge",
                    "current_step_name",
                    "attention",
                    "error",
                    "reason",
                )
            },
        ),
        ("Definition", {"fields": ("diagram",)}),
        (
            "Timing",
            {
                "fields": (
                    "created_at",
                    "updated_at",
                    "finished_at",
                    "duration",
                    "sent_at",
                    "deadline_at",
                    "recoveries",
                )
            },
        ),
        ("Origin", {"fields": ("owner", "idempotency_key")}),
        ("Context", {"fields": ("context_pretty",)}),
    )
    readonly_fields = (*flatten_fieldsets(fieldsets), "operator_actions")

    # QUERIES ---------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Saga]:
        # The context grows with every step; the list never shows it, and the detail
        # page fetches the one it shows on access.
        return super().get_queryset(request).defer("context")

    def get_search_results(self, request, queryset, search_term):
        # Exact matches only: a substring search over every key would scan the table.
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        match = Q(idempotency_key=term)
        # 1-19 ASCII digits: "²".isdigit() is true, yet int("²") raises, and int()
        # refuses thousands of digits. Beyond a bigint: not an id.
        if _DIGITS.fullmatch(term) and int(term) < 2**63:
            match |= Q(pk=int(term))
        return queryset.filter(match), False

    # COLUMNS ---------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, saga: Saga) -> str:
        return format_html(
            '<strong style="color: {}">{}</strong>',
            STATUS_COLOURS.get(saga.status, "inherit"),
            saga.status,
        )

    @admin.display(description="current step")
    def current_step_name(self, saga: Saga) -> str:
        # From the definition in memory: reading step rows would cost a query per row.
        try:
            return registry.definition_of(saga).step_names[saga.current_step]
        except (DefinitionError, IndexError):
            return f"#{saga.current_step} (unknown)"

    @admin.display(description="duration")
    def duration(self, saga: Saga) -> str:
        if saga.finished_at is None:
            return "-"
        return seconds(saga.finished_at - saga.created_at)

    @admin.display(description="error")
    def short_error(self, saga: Saga) -> str:
        # What needs an operator now comes first.
        return truncated(saga.attention or saga.error)

    @admin.display(description="context")
    def context_pretty(self, saga: Saga) -> str:
        return pretty_json(saga.context)

    @admin.display(description="diagram")
    def diagram(self, saga: Saga) -> str:
        # Drawn from the definition that runs it, coloured by its step rows (the
        # inline below reads the same rows; two small queries on one page).
        try:
            definition = registry.definition_of(saga)
        except DefinitionError as exc:
            return str(exc)
        drawing = diagrams.svg(definition, saga=saga, steps=saga.steps.all())
        # Safe: svg() escapes every label it draws, and the rest is its own markup.
        return mark_safe(drawing)

    @admin.display(description="operator actions")
    def operator_actions(self, saga: Saga) -> str:
        # Buttons that submit the page's own form (it carries the CSRF token) to the
        # action's URL; a form of their own would be nested, which HTML forbids.
        buttons = []
        if saga.status == SagaStatus.FAILED:
            buttons.append(("retry", "Retry", "Retry this saga?"))
        if saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING):
            buttons.append(("cancel", "Cancel (compensate)", "Compensate this saga?"))
        if not buttons:
            return f"None: the saga is {saga.status}."
        return format_html_join(
            " ",
            '<button type="submit" class="button" formaction="{}" formmethod="post" '
            "onclick=\"return confirm('{}')\">{}</button>",
            (
                (self._operation_url(name, saga.pk), question, label)
                for name, label, question in buttons
            ),
        )

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not self.has_operate_permission(request):
            return fieldsets
        return (
            *fieldsets[:1],
            ("Operator", {"fields": ("operator_actions",)}),
            *fieldsets[1:],
        )

    # OPERATOR ACTIONS ------------------------------------------------------------

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Operating on a saga is its model's change permission; editing stays off."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Retry failed sagas", permissions=["operate"])
    def retry_sagas(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._operate(request, _ids(queryset), _retry, "retried")

    @admin.action(
        description="Cancel (compensate) running sagas", permissions=["operate"]
    )
    def cancel_sagas(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._operate(request, _ids(queryset), _cancel, "cancelled")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        operations = [
            path(
                f"<int:saga_id>/{name}/",
                self.admin_site.admin_view(self._operation_view(operation, done)),
                name="{}_{}_{}".format(*info, name),
            )
            for name, operation, done in (
                ("retry", _retry, "retried"),
                ("cancel", _cancel, "cancelled"),
            )
        ]
        # Before the defaults, whose catch-all "<object_id>/" would match first.
        return operations + super().get_urls()

    def _operation_url(self, name: str, saga_id: int) -> str:
        info = self.admin_site.name, self.opts.app_label, self.opts.model_name
        return reverse("{}:{}_{}_".format(*info) + name, args=[saga_id])

    def _operation_view(self, operation: Callable, done: str) -> Callable:
        def view(request: HttpRequest, saga_id: int) -> HttpResponse:
            # A state change is never a GET: a prefetch or a crawler must not cancel.
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            if not self.has_operate_permission(request):
                raise PermissionDenied
            self._operate(request, [saga_id], operation, done)
            return redirect(self._change_url(saga_id))

        return view

    def _change_url(self, saga_id: int) -> str:
        info = self.admin_site.name, self.opts.app_label, self.opts.model_name
        return reverse("{}:{}_{}_change".format(*info), args=[saga_id])

    def _operate(
        self,
        request: HttpRequest,
        saga_ids: Iterable[int],
        operation: Callable[..., Saga],
        done: str,
    ) -> None:
        """Run one service call per saga, each in its own transaction.

        A saga the service refuses is reported and skipped; the others go ahead.
        """
        actor = request.user.get_username()
        succeeded = 0
        for saga_id in saga_ids:
            try:
                operation(saga_id=saga_id, actor=actor)
            except (ActionNotAllowed, DefinitionError) as exc:
                self.message_user(
                    request, f"Saga {saga_id} not {done}: {exc}", messages.WARNING
                )
            else:
                succeeded += 1
        if succeeded:
            noun = "saga" if succeeded == 1 else "sagas"
            self.message_user(request, f"{succeeded} {noun} {done}.", messages.SUCCESS)


def _ids(queryset: QuerySet[Saga]) -> list[int]:
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def _retry(*, saga_id: int, actor: str) -> Saga:
    return lifecycle.saga_retry(saga_id=saga_id, actor=actor)


def _cancel(*, saga_id: int, actor: str) -> Saga:
    return lifecycle.saga_cancel(saga_id=saga_id, actor=actor, reason=CANCEL_REASON)


admin.site.register(OutboxMessage, OutboxMessageAdmin)
