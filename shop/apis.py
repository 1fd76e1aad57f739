"""Project-wide APIs: signing in for a token, and the health check."""

from django.contrib.auth import authenticate
from django.db import DatabaseError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from sagas.selectors import VIEW_SAGAS
from shop import selectors
from shop.permissions import user_has_permission
from shop.serializers import ErrorSerializer, StrictCharField, StrictSerializer
from shop.services import token_obtain
from shop.throttling import AnonRateThrottle, LoginRateThrottle

STAFF_ONLY = f"Only for staff with {VIEW_SAGAS}; absent for anyone else."


class AuthTokenCreateApi(APIView):
    """Sign in with a username and password for the API token to send as
    ``Authorization: Token <token>`` (the same token every time)."""

    # A stale token sent along must not stop anyone signing in.
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (LoginRateThrottle, AnonRateThrottle)

    class InputSerializer(StrictSerializer):
        username = StrictCharField(max_length=150)
        password = StrictCharField(max_length=1024)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, 401: ErrorSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None:  # no such user, a wrong password or an inactive user alike
            raise AuthenticationFailed(
                "Unable to log in with the username and password."
            )
        return Response(self.OutputSerializer({"token": token_obtain(user=user)}).data)

    def get_authenticate_header(self, request) -> str:
        # Refused credentials are a 401, which must name a scheme (DRF would make it a
        # 403 without one): the scheme the token is then sent with.
        return TokenAuthentication.keyword


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
    throttle_classes = ()  # load balancers probe it, often, from one address

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
            help_text="Sagas needing an operator and sagas past their deadline: "
            '{"failed": n, "attention": n, "overdue": n}. '
            f"{STAFF_ONLY} Absent too while the database is down.",
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
        if user_has_permission(request.user, VIEW_SAGAS):
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
