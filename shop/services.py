"""Project-wide writes: the API token a user signs in with."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token


@transaction.atomic
def token_obtain(*, user: AbstractBaseUser) -> str:
    """The user's API token, created on first use; the same one every time after."""
    return Token.objects.get_or_create(user=user)[0].key
