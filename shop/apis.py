"""Project-wide APIs: the health check."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from shop import selectors


class HealthApi(APIView):
    """Is the web process able to reach PostgreSQL and the broker? Open to all."""

    # A probe sends no credentials, and a stale token must not turn it into a 401.
    authentication_classes = ()
    permission_classes = (AllowAny,)

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField(help_text='"ok" or "error".')
        database = serializers.CharField(help_text='"ok" or the error.')
        broker = serializers.CharField(help_text='"ok" or the error.')
        faults = serializers.ListField(
            child=serializers.CharField(), help_text="SAGA_FAULTS entries in force."
        )
        sagas = serializers.DictField(
            child=serializers.IntegerField(),
            help_text="Sagas needing an operator and sagas past their deadline: "
            '{"failed": n, "attention": n, "overdue": n}.',
        )

    @extend_schema(responses={200: OutputSerializer, 503: OutputSerializer})
    def get(self, request):
        report = {
            "database": selectors.health_database(),
            "broker": selectors.health_broker(),
            "faults": selectors.health_faults(),
            "sagas": selectors.health_sagas(),
        }
        healthy = report["database"] == "ok" and report["broker"] == "ok"
        data = self.OutputSerializer({"status": "ok" if healthy else "error", **report})
        return Response(
            data.data,
            status=status.HTTP_200_OK
            if healthy
            else status.HTTP_503_SERVICE_UNAVAILABLE,
        )
