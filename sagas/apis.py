"""Saga APIs: watch a saga's steps and audit trail; operators retry or cancel it."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from sagas import selectors
from sagas.definitions import Mode
from sagas.exceptions import ActionNotAllowed
from sagas.lifecycle import saga_cancel, saga_retry
from sagas.models import SagaEventKind, SagaStatus, StepStatus
from sagas.selectors import VIEW_SAGAS
from shop.exceptions import Conflict, NotFound
from shop.pagination import LimitOffsetPage, paginated_response
from shop.permissions import HasPermission, user_has_permission
from shop.serializers import (
    ErrorSerializer,
    QuerySerializer,
    StaffOnlyCharField,
    StaffOnlyDictField,
    StrictCharField,
    StrictSerializer,
)

CHANGE_SAGAS = "sagas.change_saga"  # what the admin's Retry and Cancel need too
# What a customer never sees: exception class names, task ids, operators' names.
STAFF_ONLY = f"For staff with {VIEW_SAGAS}; blank for everyone else."


class SagaListApi(APIView):
    """All sagas, newest first, by status and name: staff with sagas.view_saga."""

    permission_classes = (HasPermission(VIEW_SAGAS),)
    pagination_class = LimitOffsetPage

    class FilterSerializer(QuerySerializer):
        status = serializers.ChoiceField(
            choices=SagaStatus.choices, required=False, allow_blank=True
        )
        name = StrictCharField(max_length=100, required=False, allow_blank=True)
        mode = serializers.ChoiceField(
            choices=Mode.choices, required=False, allow_blank=True
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        mode = serializers.ChoiceField(choices=Mode.choices)
        status = serializers.ChoiceField(choices=SagaStatus.choices)
        current_step = serializers.IntegerField()
        error = serializers.CharField()
        attention = serializers.CharField(
            help_text="Why it cannot move on its own (blank when it can)."
        )
        reason = serializers.CharField(
            help_text="Why it was undone, in words its customer may read."
        )
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            queryset=selectors.saga_list(**filters.validated_data),
            serializer_class=self.OutputSerializer,
            request=request,
            view=self,
        )


class SagaDetailApi(APIView):
    """One saga with its steps in order and its audit trail: its owner's, or anyone's
    for staff with sagas.view_saga. Errors, task ids, the context and who acted are
    for those staff only; the owner gets them blank."""

    class OutputSerializer(SagaListApi.OutputSerializer):
        class StepSerializer(serializers.Serializer):
            index = serializers.IntegerField()
            name = serializers.CharField()
            status = serializers.ChoiceField(choices=StepStatus.choices)
            attempts = serializers.IntegerField()
            started_at = serializers.DateTimeField(allow_null=True)
            finished_at = serializers.DateTimeField(allow_null=True)
            duration_ms = serializers.FloatField(allow_null=True)
            error = StaffOnlyCharField(help_text=f"The last error. {STAFF_ONLY}")
            task_id = StaffOnlyCharField(
                help_text=f"The Celery task that applied it. {STAFF_ONLY}"
            )
            compensation_attempts = serializers.IntegerField()
            compensated_at = serializers.DateTimeField(allow_null=True)
            compensation_error = StaffOnlyCharField(help_text=STAFF_ONLY)

        class EventSerializer(serializers.Serializer):
            kind = serializers.ChoiceField(choices=SagaEventKind.choices)
            step_name = serializers.CharField()
            actor = StaffOnlyCharField(
                help_text=f'"system" or the operator. {STAFF_ONLY}'
            )
            detail = StaffOnlyCharField(help_text=STAFF_ONLY)
            created_at = serializers.DateTimeField()

        error = StaffOnlyCharField(help_text=f"Why it stopped. {STAFF_ONLY}")
        attention = StaffOnlyCharField(
            help_text=f"Why it cannot move on its own. {STAFF_ONLY}"
        )
        context = StaffOnlyDictField(help_text=f"What the steps work on. {STAFF_ONLY}")
        steps = StepSerializer(many=True)
        events = EventSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request, saga_id: int):
        saga = selectors.saga_visible_to(user=request.user, saga_id=saga_id)
        if saga is None:
            raise NotFound("Saga not found.")
        privileged = user_has_permission(request.user, VIEW_SAGAS)
        return Response(
            self.OutputSerializer(saga, context={"privileged": privileged}).data
        )


def operate(action, *, saga_id: int, **kwargs):
    """Run an operator action on a saga: 404 if there is none, 409 if it may not."""
    if selectors.saga_get(saga_id=saga_id) is None:
        raise NotFound("Saga not found.")
    try:
        return action(saga_id=saga_id, **kwargs)
    except ActionNotAllowed as exc:
        raise Conflict(str(exc)) from exc


class SagaRetryApi(APIView):
    """Take a FAILED saga up where it stopped (forward past its pivot, else back):
    staff with sagas.change_saga."""

    permission_classes = (HasPermission(CHANGE_SAGAS),)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=SagaStatus.choices)

    @extend_schema(
        request=None, responses={202: OutputSerializer, 409: ErrorSerializer}
    )
    def post(self, request, saga_id: int):
        saga = operate(saga_retry, saga_id=saga_id, actor=request.user.get_username())
        return Response(self.OutputSerializer(saga).data, status.HTTP_202_ACCEPTED)


class SagaCancelApi(APIView):
    """Undo a saga that has not passed its pivot, on purpose: staff with
    sagas.change_saga."""

    permission_classes = (HasPermission(CHANGE_SAGAS),)
    OutputSerializer = SagaRetryApi.OutputSerializer

    class InputSerializer(StrictSerializer):
        reason = StrictCharField(max_length=500, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer,
        responses={202: OutputSerializer, 409: ErrorSerializer},
    )
    def post(self, request, saga_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saga = operate(
            saga_cancel,
            saga_id=saga_id,
            actor=request.user.get_username(),
            **serializer.validated_data,
        )
        return Response(self.OutputSerializer(saga).data, status.HTTP_202_ACCEPTED)
