"""Saga APIs: watch a saga's steps and audit trail; operators retry or cancel it."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from sagas import selectors
from sagas.exceptions import ActionNotAllowed
from sagas.models import SagaEventKind, SagaStatus, StepStatus
from sagas.services import saga_cancel, saga_retry
from shop.exceptions import Conflict, NotFound
from shop.pagination import LimitOffsetPage, paginated_response
from shop.serializers import ErrorSerializer, StrictCharField, StrictSerializer


class SagaListApi(APIView):
    """All sagas, newest first, by status and name: staff only."""

    permission_classes = (IsAdminUser,)
    pagination_class = LimitOffsetPage

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=SagaStatus.choices, required=False, allow_blank=True
        )
        name = StrictCharField(max_length=100, required=False, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        status = serializers.ChoiceField(choices=SagaStatus.choices)
        current_step = serializers.IntegerField()
        error = serializers.CharField()
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: OutputSerializer(many=True), 400: ErrorSerializer},
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
    """One saga with its steps in order and its audit trail: staff, or its owner."""

    class OutputSerializer(SagaListApi.OutputSerializer):
        class StepSerializer(serializers.Serializer):
            index = serializers.IntegerField()
            name = serializers.CharField()
            status = serializers.ChoiceField(choices=StepStatus.choices)
            attempts = serializers.IntegerField()
            started_at = serializers.DateTimeField(allow_null=True)
            finished_at = serializers.DateTimeField(allow_null=True)
            duration_ms = serializers.FloatField(allow_null=True)
            error = serializers.CharField()
            task_id = serializers.CharField()
            compensation_attempts = serializers.IntegerField()
            compensated_at = serializers.DateTimeField(allow_null=True)
            compensation_error = serializers.CharField()

        class EventSerializer(serializers.Serializer):
            kind = serializers.ChoiceField(choices=SagaEventKind.choices)
            step_name = serializers.CharField()
            actor = serializers.CharField()
            detail = serializers.CharField()
            created_at = serializers.DateTimeField()

        context = serializers.DictField()
        steps = StepSerializer(many=True)
        events = EventSerializer(many=True)

    @extend_schema(responses={200: OutputSerializer, 404: ErrorSerializer})
    def get(self, request, saga_id: int):
        saga = selectors.saga_visible_to(user=request.user, saga_id=saga_id)
        if saga is None:
            raise NotFound("Saga not found.")
        return Response(self.OutputSerializer(saga).data)


def operate(action, *, saga_id: int, **kwargs):
    """Run an operator action on a saga: 404 if there is none, 409 if it may not."""
    if selectors.saga_get(saga_id=saga_id) is None:
        raise NotFound("Saga not found.")
    try:
        return action(saga_id=saga_id, **kwargs)
    except ActionNotAllowed as exc:
        raise Conflict(str(exc)) from exc


class SagaRetryApi(APIView):
    """Take a FAILED saga up where it stopped (forward past its pivot, else back)."""

    permission_classes = (IsAdminUser,)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=SagaStatus.choices)

    @extend_schema(
        request=None,
        responses={
            202: OutputSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request, saga_id: int):
        saga = operate(saga_retry, saga_id=saga_id, actor=request.user.get_username())
        return Response(self.OutputSerializer(saga).data, status.HTTP_202_ACCEPTED)


class SagaCancelApi(APIView):
    """Undo a saga that has not passed its pivot, on purpose."""

    permission_classes = (IsAdminUser,)
    OutputSerializer = SagaRetryApi.OutputSerializer

    class InputSerializer(StrictSerializer):
        reason = StrictCharField(max_length=500, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer,
        responses={
            202: OutputSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
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
