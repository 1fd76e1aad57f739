"""Payments APIs: a customer's account and methods; operators read any account."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import selectors
from payments.services import payment_method_deactivate
from shop.exceptions import NotFound
from shop.serializers import ErrorSerializer


class PaymentMethodListApi(APIView):
    """The caller's payment methods (a handful per customer: not paginated)."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        label = serializers.CharField()
        active = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        methods = selectors.payment_methods_of(customer_id=request.user.pk)
        return Response(self.OutputSerializer(methods, many=True).data)


class PaymentMethodDeactivateApi(APIView):
    """Stop one of the caller's payment methods being used; again is a no-op.

    Orders already placed with it are cancelled when their saga tries to charge it.
    """

    OutputSerializer = PaymentMethodListApi.OutputSerializer

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request, method_id: int):
        method = payment_method_deactivate(
            customer_id=request.user.pk, method_id=method_id
        )
        if method is None:
            raise NotFound("Payment method not found.")
        return Response(self.OutputSerializer(method).data)


class AccountMeApi(APIView):
    """The caller's account: balance and payment methods."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        customer_id = serializers.IntegerField()
        balance = serializers.DecimalField(max_digits=12, decimal_places=2)
        payment_methods = PaymentMethodListApi.OutputSerializer(
            source="methods", many=True
        )

    @extend_schema(responses={200: OutputSerializer, 404: ErrorSerializer})
    def get(self, request):
        account = selectors.account_with_methods_of(customer_id=request.user.pk)
        if account is None:
            raise NotFound("You have no account.")
        return Response(self.OutputSerializer(account).data)


class AccountDetailApi(APIView):
    """An account by id: the caller's own (staff with payments.view_account: anyone's).

    Someone else's is a 404, as if it did not exist.
    """

    OutputSerializer = AccountMeApi.OutputSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request, account_id: int):
        account = selectors.account_visible_to(user=request.user, account_id=account_id)
        if account is None:
            raise NotFound("Account not found.")
        return Response(self.OutputSerializer(account).data)
