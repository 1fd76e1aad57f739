"""OpenAPI generation: component names for nested serializers, one-URL method views."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        """Name a nested serializer after its API: ``OrderDetailApi.OutputSerializer``
        becomes ``OrderDetailOutput``, so every API's ``OutputSerializer`` is its own
        component instead of one name shared (and clashing) between them."""
        parts = type(serializer).__qualname__.split(".")
        if len(parts) == 1:
            return parts[0]
        return "".join(_strip(part) for part in parts)


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
