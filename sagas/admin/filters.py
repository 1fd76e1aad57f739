"""The saga list's own filters: what needs an operator, when sagas ended, and where
they were undone, timed out or retried (the dashboard's figures link to them)."""

from django.contrib import admin
from django.utils import timezone

from sagas import selectors, statistics
from sagas.models import ACTIVE_STATUSES
from sagas.statistics import StepFigure


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


class EndedFilter(admin.SimpleListFilter):
    """Sagas that ended (COMPLETED or COMPENSATED) within the last hour or day."""

    title = "ended"
    parameter_name = "ended"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (_, label) in statistics.WINDOWS.items()]

    def queryset(self, request, queryset):
        if self.value() in statistics.WINDOWS:
            condition = statistics.ended_within_q(self.value(), now=timezone.now())
            return queryset.filter(condition)
        return queryset


class StepFigureFilter(admin.SimpleListFilter):
    """Sagas whose audit trail holds ``figure`` at the unit chosen. Reached from the
    dashboard's figures, and shown while in use: on its own (without a window) it
    looks through every saga's trail."""

    figure: StepFigure

    def lookups(self, request, model_admin):
        return [(self.value(), self.value())] if self.value() else []

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(statistics.step_figure_q(self.figure, self.value()))
        return queryset


class UndoneAtFilter(StepFigureFilter):
    title = "undoing began at"
    parameter_name = StepFigure.UNDONE.value
    figure = StepFigure.UNDONE


class TimedOutAtFilter(StepFigureFilter):
    title = "timed out at"
    parameter_name = StepFigure.TIMED_OUT.value
    figure = StepFigure.TIMED_OUT


class RetriedAtFilter(StepFigureFilter):
    title = "retried at"
    parameter_name = StepFigure.RETRIED.value
    figure = StepFigure.RETRIED
