"""Who may do what: the Django permissions the admin checks, asked of API callers too.

Staff status opens the operator tools and a permission says which (a superuser holds
them all), as in the admin: an operator granted ``sagas.view_saga`` reads any saga in
the admin and over REST alike. Customers hold none and see only what is theirs.
"""

from django.db.models import QuerySet
from rest_framework.permissions import BasePermission


def user_has_permission(user, permission: str) -> bool:
    """Whether ``user`` is active staff holding ``permission`` ("app.codename")."""
    return bool(
        user is not None
        and user.is_active
        and user.is_staff
        and user.has_perm(permission)
    )


def visible_to(queryset: QuerySet, *, user, permission: str, owner: str) -> QuerySet:
    """Every row for staff holding ``permission``; else only the rows whose ``owner``
    field is ``user`` (someone else's row is then as good as missing: a 404)."""
    if user_has_permission(user, permission):
        return queryset
    return queryset.filter(**{owner: user.pk})


# Named like a class: it makes one, to list in permission_classes.
def HasPermission(permission: str) -> type[BasePermission]:
    """A DRF permission class: staff holding ``permission``, e.g.
    ``permission_classes = (HasPermission("sagas.change_saga"),)``. Anyone else is
    refused: 401 without credentials, 403 with them."""

    class Permission(BasePermission):
        def has_permission(self, request, view) -> bool:
            return user_has_permission(request.user, permission)

    Permission.__name__ = Permission.__qualname__ = f"HasPermission({permission!r})"
    return Permission
