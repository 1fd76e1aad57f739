"""Inventory APIs: the product catalog, public and read-only."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory import selectors
from shop.exceptions import NotFound
from shop.pagination import LimitOffsetPage, paginated_response


class ProductDetailApi(APIView):
    """One product with its stock on hand."""

    # The catalog is the same for everyone: no credentials needed, and a stale token
    # sent along does not turn a public read into a 401.
    authentication_classes = ()
    permission_classes = (AllowAny,)

    class OutputSerializer(serializers.Serializer):
        sku = serializers.CharField()
        name = serializers.CharField()
        price = serializers.DecimalField(max_digits=12, decimal_places=2)
        available = serializers.IntegerField()
        reserved = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request, sku: str):
        product = selectors.product_get(sku=sku)
        if product is None:
            raise NotFound("Product not found.")
        return Response(self.OutputSerializer(product).data)


class ProductListApi(APIView):
    """The catalog, by sku."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    pagination_class = LimitOffsetPage
    OutputSerializer = ProductDetailApi.OutputSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            queryset=selectors.product_list(),
            serializer_class=self.OutputSerializer,
            request=request,
            view=self,
        )
