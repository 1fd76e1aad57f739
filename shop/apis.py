"""Project-wide APIs: the health check."""

from django.db import DatabaseError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from shop import selectors

STAFF_ONLY = "Only for an authenticated staff user; absent for anyone else."


class LenientMixin:
    """Credentials that fail (a stale token, a database that is down) count as none:
    the caller is anonymous, never refused with a 401 or 403."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except (APIException, DatabaseError):
            return None


class LenientTokenAuthentication(LenientMixin, TokenAuthentication):
    pass


class LenientSessionAuthentication(LenientMixin, SessionAuthentication):
    pass


class HealthApi(APIView):
    """Can the web process reach PostgreSQL and the broker? Open to all; staff also
    see why a check failed, the faults switched on and the sagas needing attention."""

    # A probe sends no credentials, and a stale token must not turn it into a 401.
    authentication_classes = (LenientTokenAuthentication, LenientSessionAuthentication)
    permission_classes = (AllowAny,)

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField(help_text='"ok" or "error".')
        database = serializers.CharField(
            help_text='"ok" or "error"; for staff, the error itself.'
        )
        broker = serializers.CharField(
            help_text='"ok" or "error"; for staff, the error itself.'
        )
        faults = serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text=f"SAGA_FAULTS entries in force. {STAFF_ONLY}",
        )
        sagas = serializers.DictField(
            child=serializers.IntegerField(),
            required=False,
            help_text="Sagas needing attention, counted by kind (failed, overdue, "
            f"...). {STAFF_ONLY} Absent too while the database is down.",
        )

    @extend_schema(
        # Credentials are optional (only staff see more); none is documented first.
        auth=[{}, {"tokenAuth": []}, {"cookieAuth": []}],
        responses={200: OutputSerializer, 503: OutputSerializer},
    )
    def get(self, request):
        database, broker = selectors.health_database(), selectors.health_broker()
        healthy = database == "ok" and broker == "ok"
        report = {"status": "ok" if healthy else "error"}
        if request.user.is_active and request.user.is_staff:
            report |= {"database": database, "broker": broker}
            report["faults"] = selectors.health_faults()
            if database == "ok":
                report["sagas"] = selectors.health_sagas()
        else:
            # An error names hosts, ports and libraries: not for strangers.
            report |= {"database": _ok(database), "broker": _ok(broker)}
        return Response(
            self.OutputSerializer(report).data,
            status=status.HTTP_200_OK
            if healthy
            else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


def _ok(check: str) -> str:
    return "ok" if check == "ok" else "error"
