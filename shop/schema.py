"""OpenAPI generation: component names for nested serializers, one-URL method views,
and a schema that states what the API enforces.

Every operation documents the errors it can answer, each in the one error shape,
worked out from the view (its authentication, permissions, throttles and path), so a
new view cannot forget them. Input schemas state the checks the serializers make:
no undeclared fields in a strict input, no NUL in a string, list lengths.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication

from shop.serializers import ErrorSerializer, StrictCharField, StrictSerializer
from shop.throttling import AnonRateThrottle

# PostgreSQL cannot store a NUL, so every input string refuses it (see shop.middleware
# and shop.serializers); ECMA-262 and Python read this pattern alike.
NO_NUL = r"^[^\u0000]*$"

ERRORS = {
    400: "Bad input, each problem named under extra.fields (the body's fields by "
    "path, a query parameter, a header or a cookie by name).",
    401: "No credentials, or credentials that are not valid.",
    403: "Not allowed: {why}.",
    404: "Not found: no such object, or not one the caller may see.",
    406: "The Accept header names no type the API answers in: it answers JSON only.",
    409: "Conflict with the object's current state.",
    415: "A body that is not application/json.",
    429: "Over a rate limit: send again after Retry-After seconds.",
}
# Permissions that refuse nobody who has signed in: anything else can answer 403.
OPEN = (permissions.AllowAny, permissions.IsAuthenticated)
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait before sending again.",
        "required": True,
    }
}


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        """Name a nested serializer after its API: ``OrderDetailApi.OutputSerializer``
        becomes ``OrderDetailOutput``, so every API's ``OutputSerializer`` is its own
        component instead of one name shared (and clashing) between them."""
        parts = type(serializer).__qualname__.split(".")
        if len(parts) == 1:
            return parts[0]
        return "".join(_strip(part) for part in parts)

    # ERRORS ----------------------------------------------------------------------

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, description in self.error_statuses().items():
            error = self._get_response_for_code(
                ErrorSerializer, str(status), direction=direction
            )
            responses.setdefault(str(status), error)
            responses[str(status)]["description"] = description
        for code, response in responses.items():  # a 409 the view declared
            if not response.get("description") and int(code) in ERRORS:
                response["description"] = ERRORS[int(code)]
        if "429" in responses:
            responses["429"].setdefault("headers", {}).update(RETRY_AFTER)
        return dict(sorted(responses.items()))

    def error_statuses(self) -> dict[int, str]:
        """The errors any such view can answer, with what each means. A view declares
        the others it raises itself (a 409) in ``extend_schema(responses=...)``."""
        # Any request can carry text PostgreSQL cannot hold, or too many parameters.
        statuses = {400: ERRORS[400]}
        if self._refuses_anonymous():
            statuses[401] = ERRORS[401]
        if why := self._forbidden_because():
            statuses[403] = ERRORS[403].format(why=why)
        if "{" in self.path:  # an id or sku in the path that names nothing
            statuses[404] = ERRORS[404]
        statuses[406] = ERRORS[406]
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer():
            statuses[415] = ERRORS[415]
        if self._throttled():
            statuses[429] = ERRORS[429]
        return statuses

    def _refuses_anonymous(self) -> bool:
        challenges = any(
            auth.authenticate_header(None) for auth in self.view.get_authenticators()
        )
        return challenges and not self._admits_anonymous()

    def _admits_anonymous(self) -> bool:
        return any(
            isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()
        )

    def _forbidden_because(self) -> str:
        reasons = []
        if any(not isinstance(p, OPEN) for p in self.view.get_permissions()):
            reasons.append("the caller lacks the permission it needs")
        writes = self.method not in permissions.SAFE_METHODS
        sessions = any(
            isinstance(auth, SessionAuthentication)
            for auth in self.view.get_authenticators()
        )
        if writes and sessions:
            reasons.append("a write over a session without its CSRF token")
        return "; or ".join(reasons)

    def _throttled(self) -> bool:
        """Throttles run after the permission checks: the anonymous rate can refuse
        only where anonymous callers get that far."""
        return any(
            not isinstance(throttle, AnonRateThrottle) or self._admits_anonymous()
            for throttle in self.view.get_throttles()
        )

    # INPUT -----------------------------------------------------------------------

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if isinstance(force_instance(serializer), StrictSerializer):
            schema["additionalProperties"] = False  # an unknown field is a 400
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema is not None and isinstance(field, serializers.ListSerializer):
            # DRF checks these itself instead of through validators.
            if not field.allow_empty:
                schema["minItems"] = max(1, field.min_length or 0)
            elif field.min_length is not None:
                schema["minItems"] = field.min_length
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
        return schema

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        # After the field's own RegexValidator, whose pattern (ship_to) wins.
        if isinstance(field, StrictCharField) and "pattern" not in schema:
            schema["pattern"] = NO_NUL


def _strip(part: str) -> str:
    for suffix in ("Serializer", "Api"):
        if part.endswith(suffix) and part != suffix:
            return part[: -len(suffix)]
    return part


def expand_method_views(endpoints: list[tuple]) -> list[tuple]:
    """A preprocessing hook: document a shop.routing.method_view URL per method."""
    expanded = []
    for path, path_regex, method, callback in endpoints:
        views = getattr(callback, "method_views", None)
        if views is None:
            expanded.append((path, path_regex, method, callback))
            continue
        if method != next(iter(views)):
            continue  # listed once, from the first view's methods
        for view_method, view in views.items():
            expanded.append((path, path_regex, view_method, view))
    return expanded
