"""The saga list's own filters: what needs an operator."""

from django.contrib import admin
from django.utils import timezone

from sagas import selectors
from sagas.models import ACTIVE_STATUSES


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
