"""Admin for operators: find failed or stuck sagas, read their path, retry or cancel.

Sagas are read-only here; the only writes are the operator actions, and each one is a
call to sagas.lifecycle, which locks the saga and records who acted in its events. A
saga's page draws its timeline and history from its records (sagas.history); the
dashboard (sagas.admin.dashboard) counts over every saga and links into the list.
Times are shown in UTC, to the millisecond.
"""

import re
from collections.abc import Callable, Iterable

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import DurationField, ExpressionWrapper, F, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from sagas import diagrams, history, lifecycle, registry
from sagas.admin import dashboard, links, page
from sagas.admin.filters import (
    AttentionFilter,
    EndedFilter,
    RetriedAtFilter,
    TimedOutAtFilter,
    UndoneAtFilter,
)
from sagas.exceptions import ActionNotAllowed, DefinitionError
from sagas.models import (
    ENDED_STATUSES,
    OutboxMessage,
    Saga,
    SagaEvent,
    SagaStatus,
    SagaStep,
)
from sagas.outbox_admin import (
    OutboxMessageAdmin,
    ReadOnlyAdminMixin,
    pretty_json,
    truncated,
)

CANCEL_REASON = "cancelled from the admin"
LIST_ERROR_CHARS = 60

STATUS_COLOURS = {
    SagaStatus.PENDING: "#447e9b",
    SagaStatus.RUNNING: "#447e9b",
    SagaStatus.COMPENSATING: "#c97a00",
    SagaStatus.COMPLETED: "#2e7d32",
    SagaStatus.COMPENSATED: "#666666",
    SagaStatus.FAILED: "#ba2121",
}


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Narrow enough for a page 1280 pixels wide: the mode by its code, the step a
    # saga is at under its status, while it is at one.
    list_display = (
        "id",
        "name",
        "mode_code",
        "status_at_step",
        "created",
        "finished",
        "duration",
        "short_error",
    )
    list_filter = (
        "status",
        "mode",
        "name",
        AttentionFilter,
        EndedFilter,
        UndoneAtFilter,
        TimedOutAtFilter,
        RetriedAtFilter,
    )
    search_fields = ("idempotency_key",)
    search_help_text = (
        "Exact saga id, order id (42, or order 42) or idempotency key; times in UTC."
    )
    # No column needs a related row, so no join either.
    list_select_related = False
    # Counting the whole table on every filtered page is the slowest query here.
    show_full_result_count = False
    actions = ("retry_sagas", "cancel_sagas")
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
                    "subject",
                    "attention",
                    "error",
                    "reason",
                )
            },
        ),
        (
            "Timing (UTC)",
            {
                "fields": (
                    "created",
                    "updated",
                    "finished",
                    "duration",
                    "sent",
                    "deadline",
                    "recoveries",
                )
            },
        ),
        ("Definition", {"fields": ("diagram",)}),
        ("Origin", {"fields": ("owner", "idempotency_key")}),
        ("Context", {"fields": ("context_pretty",)}),
    )
    readonly_fields = (*flatten_fieldsets(fieldsets), "operator_actions")
    # The page draws its path (timeline, steps, history) before this fieldset.
    path_before = "Definition"

    # QUERIES ---------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Saga]:
        # The context grows with every step; the list never shows it.
        return super().get_queryset(request).defer("context")

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        """The saga with its context, steps and events: one query each, whatever
        the page draws from them."""
        sagas = (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("steps", queryset=SagaStep.objects.order_by("index")),
                Prefetch("events", queryset=SagaEvent.objects.order_by("pk")),
            )
        )
        field = (
            Saga._meta.pk if from_field is None else Saga._meta.get_field(from_field)
        )
        try:
            return sagas.get(**{field.name: field.to_python(object_id)})
        except (Saga.DoesNotExist, ValidationError, ValueError):
            return None

    def get_search_results(self, request, queryset, search_term):
        # Exact matches only: a substring search over every key would scan the table.
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        subject = _SUBJECT.fullmatch(term)
        if subject and subject.group(1).lower() in links.subject_labels():
            number = _bigint(subject.group(2))
            found = links.sagas_of_subjects(number) if number is not None else ()
            return queryset.filter(pk__in=found), False
        match = Q(idempotency_key=term)
        number = _bigint(term)
        if number is not None:
            # A saga's own id, or the id of what it is about (an order's).
            match |= Q(pk=number) | Q(pk__in=links.sagas_of_subjects(number))
        return queryset.filter(match), False

    # COLUMNS ---------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, saga: Saga) -> str:
        return format_html(
            '<strong style="color: {}">{}</strong>',
            STATUS_COLOURS.get(saga.status, "inherit"),
            saga.status,
        )

    @admin.display(description="status", ordering="status")
    def status_at_step(self, saga: Saga) -> str:
        if saga.status in ENDED_STATUSES:
            return self.status_badge(saga)
        return format_html(
            '{}<br><span class="at-step">at {}</span>',
            self.status_badge(saga),
            self.current_step_name(saga),
        )

    @admin.display(description="mode", ordering="mode")
    def mode_code(self, saga: Saga) -> str:
        return saga.mode

    @admin.display(description="current step")
    def current_step_name(self, saga: Saga) -> str:
        # From the definition in memory: reading step rows would cost a query per row.
        try:
            return registry.definition_of(saga).step_names[saga.current_step]
        except (DefinitionError, IndexError):
            return f"#{saga.current_step} (unknown)"

    @admin.display(description="created", ordering="created_at")
    def created(self, saga: Saga) -> str:
        return page.instant_html(saga.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, saga: Saga) -> str:
        return page.instant_html(saga.updated_at)

    @admin.display(description="ended", ordering="finished_at")
    def finished(self, saga: Saga) -> str:
        return page.instant_html(saga.finished_at)

    @admin.display(description="work sent")
    def sent(self, saga: Saga) -> str:
        return page.instant_html(saga.sent_at)

    @admin.display(description="deadline")
    def deadline(self, saga: Saga) -> str:
        return page.instant_html(saga.deadline_at)

    @admin.display(
        description="duration",
        ordering=ExpressionWrapper(F("finished_at") - F("created_at"), DurationField()),
    )
    def duration(self, saga: Saga) -> str:
        if saga.finished_at is None:
            return "-"
        return history.duration(saga.finished_at - saga.created_at)

    @admin.display(description="about")
    def subject(self, saga: Saga) -> str:
        return links.subject_link(saga)

    @admin.display(description="error")
    def short_error(self, saga: Saga) -> str:
        # What needs an operator now comes first.
        return truncated(saga.attention or saga.error, LIST_ERROR_CHARS)

    @admin.display(description="context")
    def context_pretty(self, saga: Saga) -> str:
        return pretty_json(saga.context)

    @admin.display(description="diagram")
    def diagram(self, saga: Saga) -> str:
        # Drawn from the definition that runs it, coloured by its step rows (read
        # once with the saga, as the timeline and the steps table read them).
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
        operations.append(
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="{}_{}_dashboard".format(*info),
            )
        )
        # Before the defaults, whose catch-all "<object_id>/" would match first.
        return operations + super().get_urls()

    # PAGES -----------------------------------------------------------------------

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            context.update(page.saga_page(obj, now=timezone.now()))
            context["path_before"] = self.path_before
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Figures over every saga, for staff who may view sagas."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Saga dashboard",
            "opts": self.opts,
            **dashboard.dashboard(now=timezone.now()),
        }
        return TemplateResponse(request, "admin/sagas/saga/dashboard.html", context)

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


_DIGITS = re.compile("[0-9]{1,19}")
_SUBJECT = re.compile(r"([A-Za-z_]+)\s*[#:]?\s*([0-9]+)")


def _bigint(term: str) -> int | None:
    """1-19 ASCII digits within a bigint, or None: "²".isdigit() is true, yet
    int("²") raises, and int() refuses thousands of digits."""
    if _DIGITS.fullmatch(term) and int(term) < 2**63:
        return int(term)
    return None


def _ids(queryset: QuerySet[Saga]) -> list[int]:
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def _retry(*, saga_id: int, actor: str) -> Saga:
    return lifecycle.saga_retry(saga_id=saga_id, actor=actor)


def _cancel(*, saga_id: int, actor: str) -> Saga:
    return lifecycle.saga_cancel(saga_id=saga_id, actor=actor, reason=CANCEL_REASON)


admin.site.register(OutboxMessage, OutboxMessageAdmin)
