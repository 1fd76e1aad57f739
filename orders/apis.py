"""Orders APIs: place an order (and start its purchase saga), read orders."""

import re

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import selectors
from orders.models import OrderStatus
from orders.services import order_place
from sagas import selectors as saga_selectors
from sagas.definitions import Mode
from sagas.models import SagaStatus
from shop.exceptions import NotFound
from shop.pagination import LimitOffsetPage, paginated_response
from shop.serializers import (
    ErrorSerializer,
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
    StrictSerializer,
)
from shop.throttling import OrderRateThrottle

IDEMPOTENCY_KEY = "Idempotency-Key"
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")
MAX_LINES = 50
MAX_QUANTITY = 1000
MAX_INT32 = 2**31 - 1


def idempotency_key(request) -> str | None:
    """The request's Idempotency-Key header: 1-255 printable ASCII characters."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise ValidationError(
            {IDEMPOTENCY_KEY: ["Must be 1 to 255 printable ASCII characters."]}
        )
    return key


class OrderCreateApi(APIView):
    """Place an order; its purchase saga reserves, charges and ships it later.

    Accepted is not confirmed: stock or balance that does not suffice cancels the
    order when its saga runs; poll the order (or its saga) for the outcome.
    """

    throttle_classes = (OrderRateThrottle,)

    class InputSerializer(StrictSerializer):
        class ItemSerializer(StrictSerializer):
            sku = StrictCharField(max_length=64)
            quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)

        items = ItemSerializer(
            many=True,
            allow_empty=False,
            max_length=MAX_LINES,
            help_text=f"1 to {MAX_LINES} lines, each sku at most once.",
        )
        payment_method_id = StrictIntegerField(min_value=1, max_value=MAX_INT32)
        ship_to = StrictRegexField(
            r"^[A-Z]{2}\Z",
            message="Must be an ISO 3166-1 alpha-2 country code, e.g. JP.",
            default="JP",
        )
        mode = serializers.ChoiceField(
            choices=Mode.choices,
            required=False,
            help_text="How its purchase saga runs; SAGA_DEFAULT_MODE "
            "(orchestration unless set) when not given.",
        )

        def validate(self, attrs):
            first_at: dict[str, int] = {}
            duplicates = {}
            for index, item in enumerate(attrs["items"]):
                sku = item["sku"]
                if sku in first_at:
                    duplicates[f"items[{index}].sku"] = [
                        f"Duplicate sku; already in items[{first_at[sku]}]."
                    ]
                first_at.setdefault(sku, index)
            if duplicates:
                raise ValidationError(duplicates)
            return attrs

    class OutputSerializer(serializers.Serializer):
        order_id = serializers.IntegerField(source="pk")
        saga_id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=OrderStatus.choices)
        mode = serializers.ChoiceField(choices=Mode.choices)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_KEY,
                {"type": "string", "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
                OpenApiParameter.HEADER,
                description="Repeat a request safely: the same key with the same "
                "body returns the first order; with another body, 409.",
            )
        ],
        request=InputSerializer,
        responses={202: OutputSerializer, 409: ErrorSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = idempotency_key(request)
        order, created = order_place(
            customer=request.user, idempotency_key=key, **serializer.validated_data
        )
        headers = {"Location": reverse("orders:detail", args=[order.pk])}
        if key is not None:
            headers["Idempotent-Replayed"] = "false" if created else "true"
        return Response(
            self.OutputSerializer(order).data,
            status=status.HTTP_202_ACCEPTED,
            headers=headers,
        )


class OrderDetailApi(APIView):
    """One order: the caller's own (staff with orders.view_order: anyone's)."""

    class OutputSerializer(serializers.Serializer):
        class LineSerializer(serializers.Serializer):
            sku = serializers.CharField()
            quantity = serializers.IntegerField()
            unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

        class ShipmentSerializer(serializers.Serializer):
            tracking_code = serializers.CharField()
            destination = serializers.CharField()
            created_at = serializers.DateTimeField()

        id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=OrderStatus.choices)
        mode = serializers.ChoiceField(choices=Mode.choices)
        total = serializers.DecimalField(max_digits=12, decimal_places=2)
        ship_to = serializers.CharField()
        cancel_reason = serializers.CharField()
        created_at = serializers.DateTimeField()
        lines = LineSerializer(many=True)
        saga_id = serializers.IntegerField(allow_null=True)
        saga_status = serializers.SerializerMethodField()
        shipment = serializers.SerializerMethodField()

        @extend_schema_field(
            serializers.ChoiceField(choices=SagaStatus.choices, allow_null=True)
        )
        def get_saga_status(self, order) -> str | None:
            return self.context["saga_statuses"].get(order.saga_id)

        @extend_schema_field(ShipmentSerializer(allow_null=True))
        def get_shipment(self, order) -> dict | None:
            shipment = getattr(order, "shipment", None)  # none until the saga ships
            if shipment is None:
                return None
            return self.ShipmentSerializer(shipment).data

    @extend_schema(responses=OutputSerializer)
    def get(self, request, order_id: int):
        order = selectors.order_visible_to(user=request.user, order_id=order_id)
        if order is None:
            raise NotFound("Order not found.")
        context = {
            "saga_statuses": saga_selectors.saga_statuses(saga_ids=[order.saga_id])
        }
        return Response(self.OutputSerializer(order, context=context).data)


class OrderListApi(APIView):
    """The caller's orders (staff with orders.view_order: everyone's), newest first."""

    pagination_class = LimitOffsetPage
    OutputSerializer = OrderDetailApi.OutputSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            queryset=selectors.order_list(user=request.user),
            serializer_class=self.OutputSerializer,
            request=request,
            view=self,
            context=lambda page: {
                "saga_statuses": saga_selectors.saga_statuses(
                    saga_ids=[order.saga_id for order in page]
                )
            },
        )
