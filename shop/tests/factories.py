"""Test users: customers, operators, staff holding only the permissions a test names."""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

#: What an operator holds: what the admin and the staff APIs check, all of it.
OPERATOR_PERMISSIONS = (
    "sagas.view_saga",
    "sagas.change_saga",
    "orders.view_order",
    "payments.view_account",
)


def client_for(user: AbstractUser | None) -> APIClient:
    """An API client signed in as ``user`` (anonymous for None)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def token_client_for(user: AbstractUser) -> APIClient:
    """An API client sending ``user``'s token, as a real client does (views that read
    credentials themselves do not see ``force_authenticate``)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user)}")
    return client


def user_create(
    *,
    username: str,
    is_staff: bool = False,
    permissions: Iterable[str] | None = None,
) -> AbstractUser:
    """A user; staff are operators (OPERATOR_PERMISSIONS) unless ``permissions``
    names what they hold instead (``()``: staff holding nothing)."""
    # No password: hashing one costs a few hundred milliseconds per user.
    user = get_user_model().objects.create_user(username=username, is_staff=is_staff)
    if permissions is None:
        permissions = OPERATOR_PERMISSIONS if is_staff else ()
    permission_grant(user, *permissions)
    return user


def permission_grant(user: AbstractUser, *permissions: str) -> None:
    """Give ``user`` each ``"app.codename"`` permission."""
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    # has_perm caches what it read; the next call reads the grants afresh.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)


#: Who a permission test asks, by name (see permission_callers).
CALLERS = (
    "anonymous",
    "owner",
    "other customer",
    "customer granted it",
    "staff without it",
    "staff with all but it",
    "staff with it",
    "superuser",
)


def permission_callers(
    *, owner: AbstractUser, other: AbstractUser, permission: str
) -> dict[str, AbstractUser | None]:
    """Every kind of caller of an endpoint guarded by ``permission``, by CALLERS name,
    for an object ``owner`` owns (``other`` is another customer)."""
    everything_else = [p for p in OPERATOR_PERMISSIONS if p != permission]
    return {
        "anonymous": None,
        "owner": owner,
        "other customer": other,
        # Permissions are for staff, as in the admin: a customer holding one is still
        # a customer.
        "customer granted it": user_create(
            username="granted", permissions=(permission,)
        ),
        "staff without it": user_create(
            username="clerk", is_staff=True, permissions=()
        ),
        "staff with all but it": user_create(
            username="half-ops", is_staff=True, permissions=everything_else
        ),
        "staff with it": user_create(
            username="ops-with-it", is_staff=True, permissions=(permission,)
        ),
        "superuser": get_user_model().objects.create_superuser(username="root"),
    }
